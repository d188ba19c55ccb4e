"""``custscore score`` on the real CDNOW log, checked against lifetimes' own RFM summary."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
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
    # the 68 customers whose only lines have amount 0 are prospects: no P(alive)
    assert sum(r["p_alive"] == "" for r in rows) == 68
    assert all(0.0 <= float(r["p_alive"]) <= 1.0 for r in rows if r["p_alive"])


def _lifetimes_summary(events: Path, as_of: str | None = None) -> tuple[Any, Any]:
    """lifetimes' summary (freq "D", in weeks like the built-in model) of the positive-amount
    lines up to ``as_of``, and the raw event frame. An amount of 0 is not a purchase for
    custscore; lifetimes would count it (see test_zero_amount_lines_are_the_only_difference)."""
    from lifetimes.utils import summary_data_from_transaction_data

    tx = pd.read_csv(events, dtype={"customer_id": str})
    tx["date"] = pd.to_datetime(tx["ts"]).dt.tz_localize(None)
    end = tx["date"].max() if as_of is None else pd.Timestamp(as_of).tz_localize(None)
    positive = tx[(tx["amount"] > 0) & (tx["date"] <= end)]
    summary = summary_data_from_transaction_data(
        positive,
        "customer_id",
        "date",
        monetary_value_col="amount",
        observation_period_end=end,
        freq="D",
        freq_multiplier=7,  # the built-in model's unit is the week: days / 7
    )
    return summary, tx


def _read_scores(out: Path) -> Any:
    # round_trip: the CSV holds repr floats; pandas' default parser is not exact
    return pd.read_csv(
        out, dtype={"customer_id": str}, float_precision="round_trip"
    ).set_index("customer_id")


def test_btyd_inputs_equal_lifetimes_summary_for_every_customer(cdnow_scores) -> None:
    """x, t_x, T equal lifetimes' summary_data_from_transaction_data(freq="D") exactly, and
    the mean repeat-day spend to rounding, for every CDNOW customer with a purchase; the
    customers whose only lines have amount 0 are prospects (0, 0, 0)."""
    events, out = cdnow_scores
    summary, tx = _lifetimes_summary(events)
    ours = _read_scores(out)
    assert len(ours) == 23_570
    buyers = ours.index.isin(summary.index)
    assert int(buyers.sum()) == len(summary) == 23_502
    joined = ours[buyers].join(summary, rsuffix="_lt")
    for name in ("frequency", "recency", "T"):
        np.testing.assert_array_equal(joined[name].to_numpy(), joined[f"{name}_lt"].to_numpy())
    np.testing.assert_allclose(
        joined["monetary_value"], joined["monetary_value_lt"], rtol=1e-12, atol=1e-12
    )
    no_purchase = ours[~buyers]
    zero_only = set(tx["customer_id"]) - set(tx.loc[tx["amount"] > 0, "customer_id"])
    assert set(no_purchase.index) == zero_only and len(zero_only) == 68
    assert (no_purchase["lifecycle"] == "prospect").all()
    assert (no_purchase[["frequency", "recency", "T"]] == 0).all().all()
    # several lines on one day are one purchase occasion: 1,157 customers have such days
    same_day = tx[tx["amount"] > 0].duplicated(["customer_id", "date"], keep=False)
    assert tx.loc[tx["amount"] > 0].loc[same_day, "customer_id"].nunique() == 1_157


def test_zero_amount_lines_are_the_only_difference(cdnow_scores) -> None:
    """lifetimes counts every line as a transaction, zero amounts included; on CDNOW's raw log
    that changes x or T for exactly the 80 customers with a zero-amount line."""
    from lifetimes.utils import summary_data_from_transaction_data

    events, out = cdnow_scores
    tx = pd.read_csv(events, dtype={"customer_id": str})
    tx["date"] = pd.to_datetime(tx["ts"]).dt.tz_localize(None)
    raw = summary_data_from_transaction_data(
        tx, "customer_id", "date", observation_period_end=tx["date"].max(), freq="D",
        freq_multiplier=7,
    )
    ours = _read_scores(out).join(raw, rsuffix="_lt")
    differs = (ours["frequency"] != ours["frequency_lt"]) | (ours["T"] != ours["T_lt"])
    with_zero = set(tx.loc[tx["amount"] == 0, "customer_id"])
    assert len(with_zero) == 80
    assert set(ours.index[differs]) == with_zero


def test_btyd_scores_match_lifetimes_for_every_customer(cdnow_scores) -> None:
    """P(alive), expected purchases in 90 days, Gamma-Gamma spend and CLV of every CDNOW
    buyer, from lifetimes' fitters with the built-in parameters, within 1e-9."""
    from lifetimes import BetaGeoFitter, GammaGammaFitter

    from models.bundle import load_model

    P = load_model(None).scoring  # the built-in model `custscore score` used
    _, out = cdnow_scores
    ours = _read_scores(out)
    ours = ours[ours["p_alive"].notna()]
    bgf = BetaGeoFitter()
    bgf.params_ = pd.Series({"r": P.r, "alpha": P.alpha, "a": P.a, "b": P.b})
    ggf = GammaGammaFitter()
    ggf.params_ = pd.Series({"p": P.p, "q": P.q, "v": P.v})
    x, t_x, big_t = (ours[c].to_numpy() for c in ("frequency", "recency", "T"))
    np.testing.assert_allclose(
        ours["p_alive"], bgf.conditional_probability_alive(x, t_x, big_t), rtol=1e-9, atol=0
    )
    cond = bgf.conditional_expected_number_of_purchases_up_to_time
    np.testing.assert_allclose(
        ours["expected_purchases_90d"], cond(90 / 7, x, t_x, big_t), rtol=1e-9, atol=0
    )
    spend = ggf.conditional_expected_average_profit(x, ours["monetary_value"].to_numpy())
    np.testing.assert_allclose(ours["expected_avg_spend"], spend, rtol=1e-9, atol=0)
    assert P.unit_seconds == 7 * 86400 and P.clv_horizon_days == 365.0
    step = 365.25 / 12 / 7  # docs/scoring.md 3.9: a twelfth of a year, in weeks
    monthly = (1 + P.clv_annual_discount) ** (1 / 12) - 1
    clv = sum(
        (cond(k * step, x, t_x, big_t) - (cond((k - 1) * step, x, t_x, big_t) if k > 1 else 0))
        / (1 + monthly) ** k
        for k in range(1, 13)
    ) * spend
    np.testing.assert_allclose(ours["clv"], clv, rtol=1e-9, atol=0)


def test_as_of_inside_a_day_counts_whole_days(tmp_path: Path) -> None:
    """T is measured to the as-of *day*, as lifetimes' observation_period_end is."""
    events = tmp_path / "e.csv"
    events.write_text(
        "event_id,type,customer_id,ts,amount,severity\n"
        "e1,purchase,a,1997-01-01T09:00:00Z,10,\n"
        "e2,purchase,a,1997-01-01T23:00:00Z,5,\n"
        "e3,purchase,a,1997-01-08T01:00:00Z,7,\n"
        "e4,purchase,a,1997-01-08T02:00:00Z,0,\n"
        "e5,purchase,b,1997-01-03T12:00:00Z,4,\n"
    )
    out = tmp_path / "s.csv"
    assert main(["score", str(events), "--out", str(out), "--as-of", "1997-01-22T18:00:00Z"]) == 0
    summary, _ = _lifetimes_summary(events, "1997-01-22T18:00:00Z")
    ours = _read_scores(out).join(summary, rsuffix="_lt")
    for name in ("frequency", "recency", "T", "monetary_value"):
        np.testing.assert_array_equal(ours[name].to_numpy(), ours[f"{name}_lt"].to_numpy())
    assert ours.loc["a", "frequency"] == 1 and ours.loc["a", "T"] == 3.0
    assert ours.loc["a", "monetary_value"] == 7.0


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
