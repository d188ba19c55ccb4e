"""models.params_file: the versioned params file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.scoring_params import ScoringParams, default_scoring_params
from models.params_file import (
    BGNBD_FIELDS,
    GAMMA_GAMMA_FIELDS,
    POLICY_FIELDS,
    SCHEMA,
    THRESHOLD_FIELDS,
    ParamsError,
    ParamsFile,
    default_params,
    from_scoring_params,
    load_params,
    model_version,
    parse_params,
    save_params,
    to_scoring_params,
)


def test_sections_cover_every_scoring_field_once() -> None:
    fields = ("unit_seconds", *BGNBD_FIELDS, *GAMMA_GAMMA_FIELDS, *THRESHOLD_FIELDS, *POLICY_FIELDS)
    assert sorted(fields) == sorted(ScoringParams._fields)
    assert len(set(fields)) == len(fields)
    assert "r_cut1" in THRESHOLD_FIELDS
    assert "window_months" in POLICY_FIELDS


def test_round_trip(tmp_path: Path) -> None:
    scoring = default_scoring_params()._replace(unit_seconds=86_400.0, r=0.5, alpha=30.0)
    path = tmp_path / "p.json"
    written = save_params(path, scoring, {"source": "test", "n_customers": 3})
    loaded = load_params(path)
    assert loaded == written
    assert to_scoring_params(loaded) == scoring
    assert loaded.time_unit == "days"
    assert loaded.fit["n_customers"] == 3
    obj = json.loads(path.read_text())
    assert obj["schema"] == SCHEMA
    assert obj["time_unit"] == "days"
    assert obj["bgnbd"] == {"r": 0.5, "alpha": 30.0, "a": scoring.a, "b": scoring.b}
    assert isinstance(obj["policy"]["window_months"], int)
    assert to_scoring_params(obj) == scoring  # a parsed JSON object works too


def test_version_is_sha256_of_canonical_content() -> None:
    import hashlib

    pf = from_scoring_params(default_scoring_params())
    obj = pf.to_json()
    content = {k: v for k, v in obj.items() if k not in ("model_version", "fit")}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    assert pf.model_version == hashlib.sha256(canonical.encode()).hexdigest()[:12]


def test_version_changes_with_any_parameter_and_not_with_metadata() -> None:
    base = default_scoring_params()
    v0 = model_version(base)
    assert from_scoring_params(base, {"source": "a"}).model_version == v0
    assert from_scoring_params(base, {"source": "b"}).model_version == v0
    for name in ScoringParams._fields:
        value = getattr(base, name)
        if name == "unit_seconds":
            changed = base._replace(unit_seconds=86_400.0)
        elif isinstance(value, int):
            changed = base._replace(**{name: value + 1})
        else:
            changed = base._replace(**{name: value * 1.001 + 0.001})
        assert model_version(changed) != v0, name


def test_reformatting_does_not_change_version(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    save_params(path, default_scoring_params())
    obj = json.loads(path.read_text())
    obj["thresholds"]["r_cut1"] = 365  # int spelling of 365.0
    path.write_text(json.dumps(obj, indent=8, sort_keys=True))
    assert load_params(path).scoring.r_cut1 == 365.0


def _saved(tmp_path: Path) -> tuple[Path, dict]:
    path = tmp_path / "p.json"
    save_params(path, default_scoring_params(), {"source": "x"})
    return path, json.loads(path.read_text())


def _edit_and_load(path: Path, obj: dict) -> str:
    path.write_text(json.dumps(obj))
    with pytest.raises(ParamsError) as info:
        load_params(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_tampered_file_is_rejected(tmp_path: Path) -> None:
    path, obj = _saved(tmp_path)
    obj["bgnbd"]["r"] = 0.3
    assert "does not match" in _edit_and_load(path, obj)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda o: o.pop("bgnbd"), "missing key 'bgnbd'"),
        (lambda o: o["gamma_gamma"].pop("q"), "missing key gamma_gamma.q"),
        (lambda o: o["bgnbd"].__setitem__("a", "0.7"), "bgnbd.a must be a number"),
        (lambda o: o["bgnbd"].__setitem__("a", True), "bgnbd.a must be a number"),
        (lambda o: o["policy"].__setitem__("window_months", 6.5), "must be an integer"),
        (lambda o: o["bgnbd"].__setitem__("alpha", -1.0), "bgnbd.alpha must be a positive"),
        (lambda o: o["bgnbd"].__setitem__("b", 0), "bgnbd.b must be a positive"),
        (lambda o: o["gamma_gamma"].__setitem__("q", 0.9), "gamma_gamma.q must be > 1"),
        (lambda o: o.__setitem__("time_unit", "months"), "time_unit must be 'days' or 'weeks'"),
        (lambda o: o.__setitem__("schema", "other/2"), "schema"),
        (lambda o: o["thresholds"].__setitem__("bogus", 1.0), "unknown key thresholds.bogus"),
        (lambda o: o.__setitem__("extra", 1), "unknown key 'extra'"),
        (lambda o: o.__setitem__("model_version", 12), "model_version must be a string"),
    ],
)
def test_bad_files_are_rejected_with_one_line(tmp_path: Path, edit: object, message: str) -> None:
    path, obj = _saved(tmp_path)
    edit(obj)  # type: ignore[operator]
    assert message in _edit_and_load(path, obj)


def test_unreadable_or_invalid_json(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ParamsError, match="not valid JSON"):
        load_params(bad)
    with pytest.raises(ParamsError, match="top level"):
        parse_params([1, 2])


def test_save_to_unwritable_place(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="cannot write"):
        save_params(tmp_path / "no" / "such" / "dir.json", default_scoring_params())


def test_unknown_unit_seconds_rejected() -> None:
    with pytest.raises(ParamsError, match="time unit"):
        from_scoring_params(default_scoring_params()._replace(unit_seconds=3600.0))


def test_default_params_is_valid_and_published() -> None:
    pf = default_params()
    assert isinstance(pf, ParamsFile)
    assert parse_params(pf.to_json()) == pf
    assert pf.time_unit == "weeks"
    assert pf.fit["n_customers"] == 23_502  # buyers: 68 CDNOW customers have only $0 lines


def test_default_params_are_lifetimes_fit_of_the_cdnow_master_log(tmp_path: Path) -> None:
    """The packaged default is the MLE on the full CDNOW log as custscore summarises it:
    lifetimes, fitted on the same (x, t_x, T, m), must find the same parameters."""
    pytest.importorskip("lifetimes")
    from lifetimes import BetaGeoFitter, GammaGammaFitter

    from custscore.commands.datasets import find_cdnow, write_cdnow_events
    from engine.segments import DEFAULT_RFM_MAP
    from models.calibrate import summarize_log
    from models.events import read_event_csv

    events = tmp_path / "cdnow.csv"
    write_cdnow_events(find_cdnow(), events)
    s = default_params().scoring
    history = summarize_log(read_event_csv(events), s, DEFAULT_RFM_MAP)
    bg = BetaGeoFitter().fit(history.frequency, history.recency, history.T)
    lt = bg.params_
    assert (s.r, s.alpha, s.a, s.b) == pytest.approx(
        (lt["r"], lt["alpha"], lt["a"], lt["b"]), rel=1e-4
    )
    repeat = (history.frequency > 0) & (history.monetary_value > 0)
    gg = GammaGammaFitter().fit(history.frequency[repeat], history.monetary_value[repeat])
    assert (s.p, s.q, s.v) == pytest.approx(
        (gg.params_["p"], gg.params_["q"], gg.params_["v"]), rel=1e-3
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"window_months": 0}, "window_months must be in [1, 12]"),
        ({"window_months": 13}, "window_months must be in [1, 12]"),
        ({"lost_months": 6}, "lost_months must be >= window_months"),
        ({"risk_hysteresis": 0.7}, "risk_hysteresis must be below risk_threshold"),
        ({"complaint_halflife_days": 0.0}, "complaint_halflife_days must be in (0"),
        ({"cooldown_max_days": 1.0}, "cooldown_max_days must be >= cooldown_min_days"),
        ({"at_risk_p_alive": 1.5}, "at_risk_p_alive must be in [0, 1]"),
    ],
)
def test_policy_values_that_would_break_the_kernels_are_rejected(change, message) -> None:
    from engine.scoring_params import default_scoring_params
    from models.params_file import ParamsError, from_scoring_params

    with pytest.raises(ParamsError) as info:
        from_scoring_params(default_scoring_params()._replace(**change))
    assert message in str(info.value)
    assert "\n" not in str(info.value)
