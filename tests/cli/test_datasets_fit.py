"""`custscore datasets cdnow` and `custscore fit` through the real CLI entry point."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from custscore.cli import main

lifetimes = pytest.importorskip("lifetimes")
DATASETS = Path(lifetimes.__file__).parent / "datasets"


def _one_line_error(capsys: pytest.CaptureFixture[str], code: int) -> str:
    out = capsys.readouterr()
    assert code != 0
    assert "Traceback" not in out.err + out.out
    lines = out.err.strip().splitlines()
    assert len(lines) == 1, out.err
    assert lines[0].startswith("custscore: error: ")
    return lines[0]


def test_datasets_cdnow_writes_the_master_log(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cdnow.csv"
    assert main(["datasets", "cdnow", "--out", str(out)]) == 0
    summary = capsys.readouterr().out.strip()
    assert summary.count("\n") == 0
    assert "69,659" in summary and "23,570" in summary
    assert "1997-01-01" in summary and "1998-06-30" in summary
    with out.open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["event_id", "type", "customer_id", "ts", "amount", "severity"]
    body = rows[1:]
    assert len(body) == 69_659
    assert len({r[2] for r in body}) == 23_570
    assert body[0] == ["cdnow-2", "purchase", "00001", "1997-01-01T00:00:00Z", "11.77", ""]
    assert len({r[0] for r in body}) == len(body)  # event ids unique
    assert {r[1] for r in body} == {"purchase"}
    assert min(r[3] for r in body) == "1997-01-01T00:00:00Z"
    assert max(r[3] for r in body) == "1998-06-30T00:00:00Z"
    assert any(float(r[4]) == 0.0 for r in body)  # zero-amount purchases are kept
    # Same purchases as the source file, in file order (independent parse of the source).
    src = [line.split() for line in (DATASETS / "CDNOW_master.txt").read_text().splitlines()[1:]]
    assert [(r[2], r[4]) for r in body] == [(s[0], s[3]) for s in src]


def test_datasets_cdnow_sample(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sample.csv"
    assert main(["datasets", "cdnow", "--sample", "--out", str(out)]) == 0
    with out.open(newline="") as fh:
        body = list(csv.reader(fh))[1:]
    assert len({r[2] for r in body}) == 2357  # the 1/10th sample behind the summary files
    assert "2,357 customers" in capsys.readouterr().out


def test_datasets_unwritable_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["datasets", "cdnow", "--out", str(tmp_path / "no" / "dir" / "x.csv")])
    assert "cannot write" in _one_line_error(capsys, code)


def test_fit_summary_writes_published_parameters(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "params.json"
    src = DATASETS / "cdnow_customers_summary_with_transactions.csv"
    assert main(["fit", str(src), "--out", str(out), "--time-unit", "weeks"]) == 0
    printed = capsys.readouterr().out
    assert "BG/NBD" in printed and "Gamma-Gamma" in printed and "loglik" in printed
    obj = json.loads(out.read_text())
    assert obj["time_unit"] == "weeks"
    for name, value in {"r": 0.242593, "alpha": 4.413532, "a": 0.792886, "b": 2.425752}.items():
        assert obj["bgnbd"][name] == pytest.approx(value, abs=1e-4)
    for name, value in {"p": 6.2488, "q": 3.7446, "v": 15.4477}.items():
        assert obj["gamma_gamma"][name] == pytest.approx(value, abs=1e-3)
    assert obj["fit"]["n_customers"] == 2357
    assert obj["fit"]["n_repeat"] == 946
    assert obj["model_version"] in printed
    from models.params_file import load_params

    assert load_params(out).model_version == obj["model_version"]


def test_fit_summary_without_monetary_keeps_default_spend(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "params.json"
    src = DATASETS / "cdnow_customers_summary.csv"
    assert main(["fit", str(src), "--out", str(out), "--time-unit", "weeks"]) == 0
    assert "no monetary_value column" in capsys.readouterr().out
    obj = json.loads(out.read_text())
    from models.params_file import default_params

    built_in = default_params().scoring
    assert obj["gamma_gamma"] == {"p": built_in.p, "q": built_in.q, "v": built_in.v}
    assert obj["fit"]["gamma_gamma"] == "default"


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        ("customer_id,frequency,recency,T\n1,2,3,4\n2,1,5,4\n", ["--time-unit", "days"],
         "line 3: recency 5 > T 4"),
        ("customer_id,frequency,recency,T\n1,2,x,4\n", ["--time-unit", "days"], "bad number"),
        ("customer_id,frequency,recency,T\n1,0,0,4\n2,0,0,5\n", ["--time-unit", "days"],
         "no repeat buyers"),
        ("customer_id,frequency,recency,T\n1,2,3,4\n", [], "--time-unit"),
        ("a,b,c\n1,2,3\n", ["--time-unit", "days"], "cannot tell"),
        ("", ["--time-unit", "days"], "empty file"),
    ],
)
def test_fit_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   content: str, extra: list[str], message: str) -> None:
    src = tmp_path / "in.csv"
    src.write_text(content)
    out = tmp_path / "params.json"
    code = main(["fit", str(src), "--out", str(out), *extra])
    assert message in _one_line_error(capsys, code)
    assert not out.exists()


def test_fit_missing_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["fit", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "p.json")])
    assert "not found" in _one_line_error(capsys, code)


def test_fit_events_matches_lifetimes_on_the_same_summary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fit the CDNOW sample event log; the oracle is lifetimes' BG/NBD fit on lifetimes' own
    summary of the same events (purchase days, freq "D" in weeks, amounts above 0: a zero
    amount is not a purchase; T at the last event of the log)."""
    import pandas as pd
    from lifetimes import BetaGeoFitter
    from lifetimes.utils import summary_data_from_transaction_data

    events = tmp_path / "sample.csv"
    assert main(["datasets", "cdnow", "--sample", "--out", str(events)]) == 0
    out = tmp_path / "params.json"
    assert main(["fit", str(events), "--out", str(out), "--time-unit", "weeks"]) == 0
    printed = capsys.readouterr().out

    df = pd.read_csv(events, dtype={"customer_id": str})
    df["date"] = pd.to_datetime(df["ts"]).dt.tz_localize(None)
    summary = summary_data_from_transaction_data(
        df[df["amount"] > 0],
        "customer_id",
        "date",
        observation_period_end=df["date"].max(),
        freq="D",
        freq_multiplier=7,
    )
    n = len(summary)
    assert f"(events, weeks): {n:,} customers" in printed
    ref = BetaGeoFitter().fit(summary["frequency"], summary["recency"], summary["T"]).params_

    obj = json.loads(out.read_text())
    assert obj["time_unit"] == "weeks"
    assert obj["fit"]["kind"] == "events"
    assert obj["fit"]["n_customers"] == n == 2349  # 8 sample customers only have $0 lines
    for name in ("r", "alpha", "a", "b"):
        assert obj["bgnbd"][name] == pytest.approx(float(ref[name]), rel=1e-4), name
    assert obj["fit"]["gamma_gamma"] == "fitted"
    assert obj["thresholds"]["quad_spend_mean"] != 35.0  # calibrated, not the default


def test_fit_events_with_no_valid_events_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "events.csv"
    src.write_text("event_id,type,customer_id,ts,amount,severity\n")
    code = main(["fit", str(src), "--out", str(tmp_path / "p.json")])
    assert "no valid events" in _one_line_error(capsys, code)


def test_datasets_cdnow_missing_from_the_installation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from custscore.commands import datasets

    monkeypatch.setattr(datasets, "_bundled", lambda filename: tmp_path / "none" / filename)
    code = main(["datasets", "cdnow", "--out", str(tmp_path / "x.csv")])
    assert "models/data/CDNOW_master.txt.gz is missing" in _one_line_error(capsys, code)
    assert not (tmp_path / "x.csv").exists()
