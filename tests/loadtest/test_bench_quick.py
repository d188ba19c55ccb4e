"""`custscore bench --quick`: the whole harness end to end on the embedded stack (CI smoke test).

Starts its own embedded broker and Valkey, preloads a small synthetic stream, drains it with
custscore and the three baselines (real worker processes), runs the paced latency phase, and
writes results.json, the plots and a markdown section. Figures are not checked (a CI machine is
not a benchmark machine); that every phase produced them is.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loadtest.report import BEGIN, END

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]


def test_bench_quick_runs_every_phase(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    md = tmp_path / "BENCH.md"
    md.write_text("# Benchmarks\n\nkept text\n")
    began = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "custscore",
            "bench",
            "--quick",
            "--out-dir",
            str(out),
            "--markdown",
            str(md),
        ],
        capture_output=True,
        text=True,
        timeout=280,
        env={k: v for k, v in os.environ.items() if not k.startswith("CUSTSCORE_")},
    )
    took = time.monotonic() - began
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((out / "results.json").read_text())
    runs = {(r["system"], r["mode"]): r["summary"] for r in doc["runs"]}
    for system in ("custscore", "faust", "naive", "raw"):
        s = runs[(system, "drain")]
        assert s["events_per_s"] and s["events_per_s"] > 0, (system, s)
        # (the raw drain can be shorter than two polls: no CPU figure then)
        assert s["worker_cpu_pct"] is not None or system == "raw", (system, s)
    assert runs[("custscore", "drain")]["events"] == doc["stream"]["events"]
    assert runs[("custscore", "drain")]["redis"]["state_key_bytes"] > 147
    # the envelope path: the same stream as batch envelopes, drained by custscore
    envelope = runs[("custscore", "envelope")]
    assert envelope["events"] == doc["stream"]["events"] and envelope["events_per_s"] > 0
    paced = runs[("custscore", "paced")]
    assert paced["latency_ms"]["n"] > 0 and paced["latency_ms"]["p99"] > 0
    for name in ("throughput.png", "latency.png", "lag.png"):
        assert (out / name).stat().st_size > 10_000, name
    text = md.read_text()
    assert text.startswith("# Benchmarks\n\nkept text\n")
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    assert "| custscore |" in text and "bare Faust pass-through" in text
    assert "Batch-envelope input" in text and "batch-envelope input ≥ 150,000" in text
    print(f"custscore bench --quick took {took:.0f} s")
