"""``custscore score`` on the real CDNOW log, checked against lifetimes' own RFM summary."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from custscore.cli import main

CONTRACT = (
    "customer_id frequency recency T monetary_value r_score f_score m_score rfm_segment "
    "value_tier abcd_class quadrant lifecycle effective p_alive churn_risk "
    "expected_purchases_90d expected_avg_spend clv next_purchase_eta"
).split()


@pytest.fixture(scope="module")
def cdnow_scores(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("score")
    events = tmp / "cdnow.csv"
    out = tmp / "scores.csv"
    assert main(["datasets", "cdnow", "--out", str(events)]) == 0
    assert main(["score", str(events), "--out", str(out)]) == 0
    return events, out


def test_score_writes_contract_columns_for_every_cdnow_customer(cdnow_scores) -> None:
    _, out = cdnow_scores
    with out.open() as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames is not None
        assert reader.fieldnames[: len(CONTRACT)] == CONTRACT
        rows = list(reader)
    assert len(rows) == 23_570
    assert len({r["customer_id"] for r in rows}) == 23_570
    tiers = {r["value_tier"] for r in rows}
    assert tiers <= {"vip", "major", "normal", "small", "none"} and "vip" in tiers
    assert all(0.0 <= float(r["p_alive"]) <= 1.0 for r in rows)


def test_btyd_inputs_match_lifetimes_summary(cdnow_scores) -> None:
    """x, t_x, T and mean repeat spend equal lifetimes' summary_data_from_transaction_data
    (daily periods) for every customer without two purchases on one day, where the
    definitions coincide (custscore counts every purchase event; lifetimes counts days)."""
    pd = pytest.importorskip("pandas")
    from lifetimes.utils import summary_data_from_transaction_data

    events, out = cdnow_scores
    tx = pd.read_csv(events, dtype={"customer_id": str})
    tx["date"] = pd.to_datetime(tx["ts"]).dt.tz_localize(None)
    same_day = tx.duplicated(["customer_id", "date"], keep=False)
    clean = set(tx["customer_id"]) - set(tx.loc[same_day, "customer_id"])
    summary = summary_data_from_transaction_data(
        tx,
        "customer_id",
        "date",
        monetary_value_col="amount",
        observation_period_end=tx["date"].max(),
        freq="D",
    )
    ours = pd.read_csv(out, dtype={"customer_id": str}).set_index("customer_id")
    joined = ours.loc[sorted(clean)].join(summary, rsuffix="_lt")
    assert len(joined) > 20_000
    assert (joined["frequency"] == joined["frequency_lt"]).all()
    weeks = 1 / 7  # the built-in model is fitted in weeks; lifetimes counts days here
    assert joined["recency"].to_numpy() == pytest.approx(
        joined["recency_lt"].to_numpy() * weeks, abs=1e-9
    )
    assert joined["T"].to_numpy() == pytest.approx(joined["T_lt"].to_numpy() * weeks, abs=1e-9)
    assert joined["monetary_value"].to_numpy() == pytest.approx(
        joined["monetary_value_lt"].to_numpy(), rel=1e-9, abs=1e-9
    )


def test_bad_rows_are_reported_and_skipped(tmp_path: Path, capsys) -> None:
    src = tmp_path / "events.csv"
    src.write_text(
        "event_id,type,customer_id,ts,amount,severity\n"
        "e1,purchase,c1,1997-01-01T00:00:00Z,10.5,\n"
        "e2,purchase,c1,yesterday,3,\n"
        "e3,refund,c1,1997-01-02T00:00:00Z,3,\n"
        "e4,complaint,c2,852163200000,,4\n"
        "e1,purchase,c1,1997-01-03T00:00:00Z,99,\n"
    )
    out = tmp_path / "scores.csv"
    assert main(["score", str(src), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "skipped 3 bad row(s) of 5" in text
    rows = {r["customer_id"]: r for r in csv.DictReader(out.open())}
    assert rows["c1"]["monetary_value"] == "0.0" and rows["c1"]["frequency"] == "0"
    assert rows["c2"]["lifecycle"] == "prospect"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["score", "/no/such.csv", "--out", "x.csv"], "no such file"),
        (["score", "{events}", "--out", "x.csv", "--as-of", "soon"], "--as-of"),
        (["score", "{events}", "--out", "x.csv", "--params", "/no/params.json"], "params"),
        (["score", "{header}", "--out", "x.csv"], "header"),
    ],
)
def test_cli_errors_are_one_line(tmp_path: Path, capsys, argv, message) -> None:
    events = tmp_path / "e.csv"
    events.write_text("event_id,type,customer_id,ts,amount,severity\ne,visit,c,852076800000,,\n")
    header = tmp_path / "h.csv"
    header.write_text("id,kind\n1,2\n")
    argv = [a.format(events=events, header=header) for a in argv]
    code = main(argv)
    err = capsys.readouterr().err
    assert code != 0
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
