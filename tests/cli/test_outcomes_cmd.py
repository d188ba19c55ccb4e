"""``custscore outcomes`` against counters written into the real Valkey.

The counters are written with HINCRBY under the documented key layout
("<prefix>:{p<p>}:counters"); every expected number (sums over partitions, rates, spend per
closed contact, the uplift) is computed here by hand, the interval by statsmodels, and the
current holdout version from the published definition with hashlib.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import redis
from fixtures.streaming import private_settings, run_script
from statsmodels.stats.proportion import confint_proportions_2indep
from streaming_support import cli_env, offline_settings

from config.settings import Settings
from custscore.cli import main

SALT, FRACTION = "outcomes-test-salt", 0.2
OLD = "00000000beef"  # the counters of an earlier holdout version
T = ("nudge", "repurchase", "timely_reminder", "normal", "treated")
H = ("nudge", "repurchase", "timely_reminder", "normal", "holdout")
W = ("win_back", "complaint", "service_recovery_offer", "major", "treated")


def _version(salt: str, fraction: float) -> str:
    return hashlib.blake2b(f"{salt}|{fraction!r}".encode(), digest_size=16).hexdigest()[:12]


CURRENT = _version(SALT, FRACTION)


def _f(record: str, cell: tuple[str, ...], version: str, stat: str | None = None) -> str:
    return "|".join([record, *cell, version, *([stat] if stat else [])])


# partition -> field -> count, as the worker's commits would leave them
WRITES: dict[int, dict[str, int]] = {
    0: {
        _f("contact", T, CURRENT): 60,
        _f("outcome", T, CURRENT, "n"): 50,
        _f("outcome", T, CURRENT, "responded"): 20,
        _f("outcome", T, CURRENT, "spend_cents"): 400_000,
        _f("contact", H, CURRENT): 9,
        _f("outcome", H, CURRENT, "n"): 8,
        _f("outcome", H, CURRENT, "responded"): 1,
        _f("outcome", H, CURRENT, "spend_cents"): 2_500,
        "suppressed|nudge|repurchase": 3,
        "complaint|delivery": 4,
    },
    2: {
        _f("contact", T, CURRENT): 40,
        _f("outcome", T, CURRENT, "n"): 30,
        _f("outcome", T, CURRENT, "responded"): 10,
        _f("outcome", T, CURRENT, "spend_cents"): 100_001,
        _f("contact", H, CURRENT): 11,
        _f("outcome", H, CURRENT, "n"): 12,
        _f("outcome", H, CURRENT, "responded"): 3,
        _f("contact", W, CURRENT): 7,
        "suppressed|nudge|repurchase": 2,
        "suppressed|win_back|complaint": 5,
    },
    3: {
        _f("contact", T, OLD): 5,
        _f("outcome", T, OLD, "n"): 5,
        _f("outcome", T, OLD, "responded"): 2,
    },
}


@pytest.fixture
def settings(kafka_bootstrap: str, redis_url: str) -> Settings:
    s = private_settings(
        kafka_bootstrap, redis_url, partitions=4, holdout_salt=SALT, holdout_fraction=FRACTION
    )
    client = redis.Redis.from_url(redis_url)
    try:
        for partition, fields in WRITES.items():
            for field, count in fields.items():
                client.hincrby(f"{s.redis_key_prefix}:{{p{partition}}}:counters", field, count)
    finally:
        client.close()
    return s


def test_table(settings: Settings) -> None:
    result = run_script(settings, "outcomes")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    rows = [line.split() for line in lines]
    assert lines[0] == f"holdout version {CURRENT} (current)"
    assert f"holdout version {OLD}" in lines
    # treated nudges: 60 + 40 contacts, 50 + 30 closed, 20 + 10 responded,
    # (400000 + 100001) cents over 80 closed = 62.5000125 per contact
    assert [*T, "100", "80", "30", "37.50%", "62.50"] in rows
    # held out: 9 + 11 contacts, 8 + 12 closed, 1 + 3 responded, 25 currency units / 20
    assert [*H, "20", "20", "4", "20.00%", "1.25"] in rows
    assert [*W, "7", "0", "0", "-", "-"] in rows
    # uplift of the current version: 30/80 - 4/20
    low, high = confint_proportions_2indep(30, 80, 4, 20, method="newcomb", compare="diff")
    uplift = [
        "30/80",
        "37.50%",
        "4/20",
        "20.00%",
        f"{100 * (30 / 80 - 4 / 20):+.2f}pp",
        f"{100 * low:+.2f}pp",
        f"{100 * high:+.2f}pp",
    ]
    assert ["all", "all", *uplift] in rows
    assert ["nudge", "all", *uplift] in rows
    assert ["win_back", "all", "0/0", "-", "0/0", "-", "-", "-", "-"] in rows
    # the old version's block has its own numbers, not pooled with the current ones
    old = lines.index(f"holdout version {OLD}")
    assert [*T, "5", "5", "2", "40.00%", "0.00"] in rows[old:]
    assert ["all", "all", "2/5", "40.00%", "0/0", "-", "-", "-", "-"] in rows[old:]
    assert ["nudge", "repurchase", str(3 + 2)] in rows
    assert ["win_back", "complaint", "5"] in rows


def test_json(settings: Settings) -> None:
    result = run_script(settings, "outcomes", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["current_version"] == CURRENT
    assert [v["holdout_version"] for v in doc["versions"]] == [CURRENT, OLD]
    current = doc["versions"][0]
    treated = next(c for c in current["cells"] if c["group"] == "treated" and c["kind"] == "nudge")
    assert treated["contacts"] == 100 and treated["closed"] == 80 and treated["responded"] == 30
    assert treated["spend_cents"] == 500_001
    assert treated["spend_per_contact"] == pytest.approx(5000.01 / 80)
    overall = current["uplift"][0]
    assert (overall["kind"], overall["reason"]) == ("all", "all")
    assert overall["uplift"] == pytest.approx(30 / 80 - 4 / 20)
    low, high = confint_proportions_2indep(30, 80, 4, 20, method="newcomb", compare="diff")
    assert (overall["low"], overall["high"]) == pytest.approx((low, high), abs=1e-12)
    assert {(s["kind"], s["reason"]): s["count"] for s in doc["suppressed"]} == {
        ("nudge", "repurchase"): 5,
        ("win_back", "complaint"): 5,
    }


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_nothing_counted_yet(
    kafka_bootstrap: str, redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    cli_env(private_settings(kafka_bootstrap, redis_url), monkeypatch)
    assert main(["outcomes"]) == 0
    assert capsys.readouterr().out.strip() == "no contacts counted yet"


def test_corrupt_counters_fail_in_one_line(
    kafka_bootstrap: str, redis_url: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    s = private_settings(kafka_bootstrap, redis_url)
    cli_env(s, monkeypatch)
    client = redis.Redis.from_url(redis_url)
    try:
        client.hset(f"{s.redis_key_prefix}:{{p1}}:counters", "suppressed|nudge|repurchase", "x")
        assert main(["outcomes"]) == 1
        line = _one_error_line(capsys.readouterr().err)
        assert line.startswith("custscore: error: unreadable contact counters")
        # a key of the counters' name that is not a hash
        client.delete(f"{s.redis_key_prefix}:{{p1}}:counters")
        client.set(f"{s.redis_key_prefix}:{{p1}}:counters", "oops")
        assert main(["outcomes", "--json"]) == 1
        line = _one_error_line(capsys.readouterr().err)
        assert line.startswith("custscore: error: cannot read the contact counters at redis://")
    finally:
        client.close()


def test_redis_down_fails_in_one_line(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    cli_env(offline_settings(), monkeypatch)
    assert main(["outcomes"]) == 2
    err = capsys.readouterr().err
    line = _one_error_line(err)
    assert line.startswith("custscore: error: no Redis answers at redis://127.0.0.1:")


def test_bad_argument(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    cli_env(offline_settings(), monkeypatch)
    with pytest.raises(SystemExit) as exited:
        main(["outcomes", "--nope"])
    assert exited.value.code == 2
    assert "unrecognized arguments: --nope" in capsys.readouterr().err
