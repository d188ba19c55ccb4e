"""``custscore evaluate`` end to end on CDNOW (the standard split) through the real CLI entry
point, with independent oracles (lifetimes' split and BG/NBD, scikit-learn's AUC), and the
one-line errors for bad input."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fixtures.evaluation import (
    CALIBRATION_END,
    HOLDOUT_END,
    CdnowEvaluation,
    Run,
    run_cli,
)

from custscore.evaluation import plots as plotting
from custscore.evaluation.verdict import verdict
from models.backtest import ALERT_RULES, CLASS_ORDERS, FRAMEWORKS

pytestmark = pytest.mark.slow

CAL_END, HOLD_END = CALIBRATION_END, HOLDOUT_END


def one_line_error(run: Run) -> str:
    assert run.code != 0
    assert "Traceback" not in run.out + run.err
    lines = [line for line in run.err.splitlines() if not line.startswith("evaluate: ")]
    assert len(lines) == 1, run.err
    assert lines[0].startswith("custscore: error: ")
    return lines[0]


@pytest.fixture(scope="module")
def cdnow(cdnow_events: Path) -> Path:
    return cdnow_events


@dataclass(frozen=True)
class Report:
    run: Run
    out: Path
    doc_path: Path
    doc: dict[str, Any]


@pytest.fixture(scope="module")
def report(cdnow_evaluation: CdnowEvaluation) -> Report:
    out = cdnow_evaluation.out
    doc = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    return Report(cdnow_evaluation.run, out, cdnow_evaluation.doc_path, doc)


def test_every_file_is_written(report: Report) -> None:
    names = {p.name for p in report.out.iterdir()}
    assert {"report.html", "report.md", "metrics.json", "params.json"} <= names
    assert report.doc["plots"] == plotting.plot_names(report.doc)
    assert len(report.doc["plots"]) == 5 + sum(1 for f in FRAMEWORKS if f.classes)
    for name in report.doc["plots"]:
        data = (report.out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5_000, name
    assert names - set(report.doc["plots"]) == {"report.html", "report.md", "metrics.json",
                                                 "params.json"}


def test_metrics_json_holds_every_figure(report: Report) -> None:
    doc = report.doc
    assert set(doc) == {"schema", "command", "input", "period", "model", "population",
                        "settings", "frameworks", "purchases", "spend", "alerts", "plots",
                        "runtime", "verdict"}
    assert doc["schema"] == "custscore.evaluation/1"
    assert doc["period"]["calibration_last_day"] == "1997-09-30"
    assert doc["period"]["holdout_first_day"] == "1997-10-01"
    assert doc["period"]["holdout_last_day"] == "1998-06-30"
    assert doc["period"]["holdout_days"] == 273
    pop = doc["population"]
    # the CDNOW cohort joined in 1997 Q1; of the 70 customers who are not calibration buyers,
    # 68 only ever had $0 lines and 2 had their first positive purchase in the holdout
    assert (pop["calibration_buyers"], pop["holdout_buyers"]) == (23_500, 7_056)
    assert pop["new_in_holdout"] == 2 and doc["input"]["customers"] == 23_570
    assert [f["key"] for f in doc["frameworks"]] == [f.key for f in FRAMEWORKS]
    assert sorted(f["rank"] for f in doc["frameworks"]) == list(range(1, len(FRAMEWORKS) + 1))
    for f in doc["frameworks"]:
        assert 0.0 <= f["auc"] <= 1.0 and f["top_decile_lift"] > 0, f["key"]
        assert len(f["gains"]["contacted"]) == len(f["gains"]["captured"]) == 101
        assert f["gains"]["captured"][0] == 0 and f["gains"]["captured"][-1] == 1.0
        if f["kind"] == "classes":
            assert f["order"] == list(CLASS_ORDERS[f["key"]])
            names = [c["name"] for c in f["classes"]]
            assert names == [c for c in CLASS_ORDERS[f["key"]] if c in names]  # fixed order
            assert sum(c["customers"] for c in f["classes"]) == 23_500
            assert sum(c["buyers"] for c in f["classes"]) == 7_056
            for c in f["classes"]:
                assert c["low"] <= c["rate"] <= c["high"]
    assert [b["frequency_cal"] for b in doc["purchases"]["buckets"]] == list(range(7))
    assert set(doc["spend"]["captured"]) == {"1%", "5%", "20%"}
    for cap in doc["spend"]["captured"].values():
        assert cap["clv"] <= cap["ceiling"] and cap["past_spend"] <= cap["ceiling"]
    assert [a["key"] for a in doc["alerts"]] == [r.key for r in ALERT_RULES]
    for a in doc["alerts"]:
        assert a["lost"] == 23_500 - 7_056
        assert a["came_back"] + a["lost_flagged"] == a["flagged"]


def lifetimes_split(events: Path) -> Any:
    """lifetimes' calibration_and_holdout_data of the CDNOW purchase lines (amount > 0) summed
    per customer and day, both ends at the last second of their days (models/holdout.py)."""
    pytest.importorskip("lifetimes")
    pd = pytest.importorskip("pandas")
    from lifetimes.utils import calibration_and_holdout_data

    raw = pd.read_csv(events, dtype={"customer_id": str})
    raw = raw[raw["amount"] > 0]
    raw["date"] = pd.to_datetime(raw["ts"].str[:10], format="%Y-%m-%d")
    lines = raw.groupby(["customer_id", "date"], as_index=False)["amount"].sum()
    return calibration_and_holdout_data(
        lines, "customer_id", "date", calibration_period_end="1997-09-30 23:59:59",
        observation_period_end="1998-06-30 23:59:59", freq="D", monetary_value_col="amount")


def test_cdnow_figures_match_independent_oracles(report: Report, cdnow: Path) -> None:
    """The response and the naive ranking from lifetimes' own split (AUC by scikit-learn),
    and the expected holdout purchases from lifetimes' BG/NBD with the fitted parameters."""
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    pd = pytest.importorskip("pandas")
    from lifetimes import BetaGeoFitter

    summary = lifetimes_split(cdnow)
    doc = report.doc
    bought = (summary["frequency_holdout"] > 0).to_numpy()
    assert (len(summary), int(bought.sum())) == (23_500, 7_056)
    frameworks = {f["key"]: f for f in doc["frameworks"]}
    days_since = (summary["T_cal"] - summary["recency_cal"]).to_numpy()  # in days
    assert frameworks["days_since_last_purchase"]["auc"] == pytest.approx(
        sklearn_metrics.roc_auc_score(bought, -days_since), abs=1e-6)
    assert frameworks["bought_90d"]["auc"] == pytest.approx(
        sklearn_metrics.roc_auc_score(bought, days_since < 90), abs=1e-6)

    params = json.loads((report.out / "params.json").read_text())
    assert params["time_unit"] == "days"
    bg = BetaGeoFitter()
    bg.params_ = pd.Series(params["bgnbd"])
    expected = bg.conditional_expected_number_of_purchases_up_to_time(
        summary["duration_holdout"], summary["frequency_cal"], summary["recency_cal"],
        summary["T_cal"])
    purchases = doc["purchases"]
    assert purchases["expected_total"] == pytest.approx(float(expected.sum()), rel=1e-7)
    assert purchases["actual_total"] == float(summary["frequency_holdout"].sum())
    assert purchases["mae"] == pytest.approx(
        float(np.abs(expected - summary["frequency_holdout"]).mean()), abs=1e-6)  # 6 places


def test_the_verdict_is_derived_from_the_figures(report: Report) -> None:
    doc = report.doc
    text = doc["verdict"]
    assert text == verdict({k: v for k, v in doc.items() if k != "verdict"})
    best = max(doc["frameworks"], key=lambda f: f["auc"])
    assert f"{best['label']} ranked the customers best (ROC AUC {best['auc']:.3f})" in text
    assert "23,500" in text and "7,056" in text
    assert text in report.run.out
    assert f"**Verdict.** {text}" in (report.out / "report.md").read_text()
    assert "<strong>Verdict.</strong>" in (report.out / "report.html").read_text()


def test_the_html_report_is_self_contained(report: Report) -> None:
    page = (report.out / "report.html").read_text(encoding="utf-8")
    images = re.findall(r'<img src="([^"]*)"', page)
    assert len(images) == len(report.doc["plots"])
    assert all(src.startswith("data:image/png;base64,") for src in images)
    assert not re.search(r'\s(?:src|href)="(?!data:)', page)  # nothing fetched
    assert "document.body.dataset.plots = loaded + \"/\" + images.length" in page
    assert "plot-broken" in page and "<table>" in page


def test_the_doc_links_its_plots_relative_to_itself(report: Report) -> None:
    text = report.doc_path.read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(links) == len(report.doc["plots"])
    for link in links:
        assert link.startswith("../report/"), link
        assert (report.doc_path.parent / link).is_file()
    assert text.splitlines()[0] == "# Which framework predicts response best?"


def test_runtime_and_progress_are_printed(report: Report) -> None:
    last = report.run.out.strip().splitlines()[-1]
    found = re.search(r" in (\d+\.\d) s$", last)
    assert found and last.startswith("wrote report.html, report.md, metrics.json, params.json")
    total = report.doc["runtime"]["seconds"]["total"]
    assert 0 < total <= float(found.group(1)) + 0.1
    assert set(report.doc["runtime"]["seconds"]) == {"read", "fit", "score", "timeline",
                                                     "metrics", "plots", "total"}
    steps = [line for line in report.run.err.splitlines() if line.startswith("evaluate: ")]
    assert [s.split()[2] for s in steps] == ["read", "fit", "score", "timeline", "metrics",
                                             "plots"]
    print(f"\ncustscore evaluate on CDNOW: {report.run.seconds:.1f} s ({last})")


# ------------------------------------------------------------------------- small logs


def small_log(path: Path, *, visits_only: bool = False) -> Path:
    """Forty customers over 1997; half buy again after September."""
    rows = ["event_id,type,customer_id,ts,amount,severity"]
    for i in range(40):
        kind = "visit" if visits_only else "purchase"
        amount = "" if visits_only else "12.50"
        rows.append(f"e{i}a,{kind},c{i},1997-0{1 + i % 8}-1{i % 10}T10:00:00Z,{amount},")
        if i % 2 == 0:
            rows.append(f"e{i}b,{kind},c{i},1997-11-{10 + i % 10}T10:00:00Z,{amount},")
    rows.append("e-last,purchase,c0,1997-12-31T10:00:00Z,20.00,")
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture()
def builtin_params(tmp_path: Path) -> Path:
    from models.params_file import default_params, save_params

    path = tmp_path / "builtin.json"
    built_in = default_params()
    save_params(path, built_in.scoring, built_in.fit)
    return path


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--calibration-end", "yesterday"], "--calibration-end: bad_ts"),
        (["--calibration-end", "1996-12-31T00:00:00Z"], "is before the first event"),
        (["--calibration-end", "1997-12-31T00:00:00Z"], "there is no holdout period"),
        (["--calibration-end", "1997-09-30T00:00:00Z", "--holdout-end", "1997-09-30T12:00:00Z"],
         "is not on a day after the calibration end"),
        (["--calibration-end", "1997-09-30T00:00:00Z", "--holdout-end", "1998-01-01T00:00:00Z"],
         "the log does not cover the holdout period"),
        (["--calibration-end", "1997-09-30T00:00:00Z", "--recent-days", "0"],
         "--recent-days must be at least 1"),
    ],
)
def test_bad_periods_are_one_line_errors(tmp_path: Path, builtin_params: Path, argv: list[str],
                                         message: str) -> None:
    events = small_log(tmp_path / "events.csv")
    out = tmp_path / "out"
    run = run_cli("evaluate", str(events), "--params", str(builtin_params), "--out", str(out),
                  *argv)
    assert message in one_line_error(run)
    assert not (out / "report.html").exists()


def test_bad_files_are_one_line_errors(tmp_path: Path) -> None:
    cal = ["--calibration-end", CAL_END]
    events = small_log(tmp_path / "events.csv")
    cases = [
        (["evaluate", str(tmp_path / "nope.csv"), *cal, "--out", str(tmp_path / "o1")],
         "event file not found"),
        (["evaluate", str(tmp_path), *cal, "--out", str(tmp_path / "o2")],
         "event file is a directory"),
        (["evaluate", str(events), *cal, "--out", str(events)], "exists and is not a directory"),
        (["evaluate", str(events), *cal, "--out", str(events / "sub")], "cannot write there"),
        (["evaluate", str(events), *cal, "--params", str(tmp_path / "none.json"), "--out",
          str(tmp_path / "o3")], "none.json"),
        (["evaluate", str(small_log(tmp_path / "visits.csv", visits_only=True)), *cal, "--out",
          str(tmp_path / "o4")], "no purchases"),
    ]
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,c\n1,2,3\n")
    cases.append((["evaluate", str(bad), *cal, "--out", str(tmp_path / "o5")], "header"))
    for argv, message in cases:
        assert message in one_line_error(run_cli(*argv)), argv


def test_without_matplotlib_one_line_says_what_to_install(
    tmp_path: Path, builtin_params: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plotting, "available", lambda: False)
    events = small_log(tmp_path / "events.csv")
    out = tmp_path / "out"
    run = run_cli("evaluate", str(events), "--calibration-end", CAL_END, "--params",
                  str(builtin_params), "--out", str(out))
    assert "pip install 'custscore[report]'" in one_line_error(run)
    assert "--no-plots" in run.err
    assert not out.exists()


def test_no_plots_writes_the_report_without_them(
    tmp_path: Path, builtin_params: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(plotting, "available", lambda: False)
    events = small_log(tmp_path / "events.csv")
    out = tmp_path / "out"
    run = run_cli("evaluate", str(events), "--calibration-end", CAL_END, "--params",
                  str(builtin_params), "--recent-days", "30", "--out", str(out), "--no-plots")
    assert run.code == 0, run.err
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "report.html", "report.md"]
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["plots"] == [] and doc["population"]["calibration_buyers"] == 40
    assert doc["model"]["source"] == f"params file {builtin_params}"
    assert doc["period"]["alert_window_days"] == 30
    assert "matplotlib is not installed" in (out / "report.md").read_text()
    assert "<img" not in (out / "report.html").read_text()
    assert "and 0 plots" in run.out


def test_the_warm_up_child_compiles_and_is_reaped() -> None:
    from custscore.evaluation import warm

    child = warm.start()
    assert child is not None
    warm.wait(child, timeout=300)
    assert child.returncode == 0  # the timeline kernels compiled or loaded from the cache
    warm.stop(child)
    stopped = warm.start()
    warm.stop(stopped)  # a child still running is ended and reaped
    assert stopped is not None and stopped.poll() is not None
