"""A plain ``pip install`` of custscore, without ``[dev]``, in a new venv: the demo and evaluate.

The package is built from a copy of this checkout's sources (what ``pip install .`` builds:
pyproject.toml, README.md, LICENSE-DATA and the packages it lists) into a wheel, which pip
installs into a venv of its own with the machine's package index configuration and nothing
else: no lifetimes, no pandas, no pytest, no matplotlib. Then, as a user would:

* ``custscore datasets cdnow --sample`` reads the CDNOW log bundled as package data, and
  ``custscore demo --events`` replays its first 300 customers through its own embedded broker,
  Valkey and worker (free ports, a private run dir: nothing shared with the test stack);
* ``custscore evaluate`` on the CDNOW master log (the standard split) fails in one line naming
  ``custscore[report]`` while matplotlib is missing, and writes the report once
  ``custscore[report]`` is installed.

The venv needs no pip of its own: this venv's pip installs into it (``pip --python``). The
first run in a fresh venv compiles the numba kernels (about a minute of the demo's time), so the
demo runs in the background while the evaluate test runs (two cores, two compiles at once).
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fixtures.stack import port_free

from custscore.processes import free_port
from custscore.stack import process_running

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
CALIBRATION_END = "1997-09-30T00:00:00Z"
HOLDOUT_END = "1998-06-30T00:00:00Z"
DEMO_CUSTOMERS = 300
# in the dev extra, never in a plain install
DEV_ONLY = ("lifetimes", "pandas", "pytest", "matplotlib", "sklearn")


@dataclass(frozen=True)
class FreshInstall:
    venv: Path
    wheel: Path
    work: Path  # cwd of every command: never the checkout, so nothing imports from it

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def custscore(self, *args: str, env: dict[str, str] | None = None,
                  timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.venv / "bin" / "custscore"), *args], cwd=self.work,
            env=env or _clean_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=timeout, check=False,
        )

    def pip_install(self, *requirements: str) -> float:
        """Install with this venv's pip into the fresh venv; returns the seconds it took."""
        began = time.monotonic()
        _run([sys.executable, "-m", "pip", "--python", str(self.python), "install",
              "--no-compile", "--disable-pip-version-check", "--quiet", *requirements])
        return time.monotonic() - began


def _clean_env() -> dict[str, str]:
    """This environment less custscore settings and Python paths (pip's index config stays)."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("CUSTSCORE_", "PYTHON", "VIRTUAL_ENV"))}


def _run(argv: list[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, env=_clean_env(), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"{' '.join(argv)}: {done.stdout[-1500:]}{done.stderr[-3000:]}"
    return done


def _copy_sources(dest: Path) -> Path:
    """What ``pip install .`` reads: pyproject.toml, the readme, licence files, the packages."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    dest.mkdir()
    for name in ("pyproject.toml", pyproject["project"]["readme"], "LICENSE-DATA"):
        shutil.copy2(ROOT / name, dest / name)
    patterns = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.nbi", "*.nbc")
    for pattern in patterns:  # "custscore*" and the like: top-level package directories
        for package in ROOT.glob(pattern):
            if (package / "__init__.py").is_file():
                shutil.copytree(package, dest / package.name, ignore=ignore)
    return dest


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> FreshInstall:
    base = tmp_path_factory.mktemp("fresh-install")
    began = time.monotonic()
    source = _copy_sources(base / "src")
    wheels = base / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check",
          "--quiet", "--wheel-dir", str(wheels), str(source)])
    (wheel,) = wheels.glob("custscore-*.whl")
    built = time.monotonic() - began
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    work = base / "work"
    work.mkdir()
    install = FreshInstall(venv, wheel, work)
    took = install.pip_install(str(wheel))
    print(f"\nfresh install: wheel built in {built:.1f} s, pip install (no extras) {took:.1f} s")

    probe = (
        "import importlib.util, json, custscore; "
        f"print(json.dumps([custscore.__file__, [m for m in {DEV_ONLY!r} "
        "if importlib.util.find_spec(m)]]))"
    )
    done = subprocess.run([str(install.python), "-c", probe], cwd=work, env=_clean_env(),
                          capture_output=True, text=True, timeout=120, check=True)
    where, dev_found = json.loads(done.stdout)
    assert Path(where).is_relative_to(venv), where  # the installed copy, not the checkout
    assert dev_found == [], f"a plain install brought dev packages: {dev_found}"
    return install


def _first_customers(source: Path, dest: Path, customers: int) -> int:
    """The events of the first ``customers`` customers of ``source`` (file order); returns
    how many events that is."""
    with source.open(newline="") as fh:
        rows = list(csv.reader(fh))
    kept_ids: set[str] = set()
    kept = []
    for row in rows[1:]:
        if row[2] not in kept_ids and len(kept_ids) < customers:
            kept_ids.add(row[2])
        if row[2] in kept_ids:
            kept.append(row)
    with dest.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(rows[0])
        writer.writerows(kept)
    return len(kept)


@dataclass
class DemoRun:
    """``custscore demo`` running in the background (see :func:`demo`)."""

    proc: subprocess.Popen[str]
    events: int
    ports: dict[str, int]
    run_dir: Path
    began: float
    out: str | None = None
    err: str = ""
    seconds: float = 0.0

    def result(self) -> tuple[int, str, str]:
        if self.out is None:
            self.out, self.err = self.proc.communicate(timeout=660)
            self.seconds = time.monotonic() - self.began
        return self.proc.returncode, self.out, self.err


@pytest.fixture(scope="module")
def demo(fresh: FreshInstall) -> Iterator[DemoRun]:
    """``custscore demo --events`` on the first 300 customers of the bundled CDNOW sample,
    started in the background: the evaluate test runs meanwhile, so the two first-run numba
    compiles of the fresh venv overlap on the machine's two cores instead of adding up."""
    sample = fresh.work / "cdnow-sample.csv"
    wrote = fresh.custscore("datasets", "cdnow", "--sample", "--out", str(sample))
    assert wrote.returncode == 0, wrote.stderr
    assert "6,919 purchase events of 2,357 customers" in wrote.stdout
    events = fresh.work / "demo-events.csv"
    n = _first_customers(sample, events, DEMO_CUSTOMERS)
    ports: dict[str, int] = {}
    for name in ("broker", "redis", "web"):
        port = free_port()
        while port in ports.values():
            port = free_port()
        ports[name] = port
    run_dir = fresh.work / "demo-run"
    env = _clean_env() | {
        "CUSTSCORE_RUN_DIR": str(run_dir),
        "CUSTSCORE_BROKER_PORT": str(ports["broker"]),
        "CUSTSCORE_REDIS_PORT": str(ports["redis"]),
        "CUSTSCORE_WEB_PORT": str(ports["web"]),
        "CUSTSCORE_SNAPSHOT_INTERVAL_S": "2",
        "CUSTSCORE_PARTITIONS": "4",
    }
    proc = subprocess.Popen(
        [str(fresh.venv / "bin" / "custscore"), "demo", "--events", str(events),
         "--timeout", "300"],
        cwd=fresh.work, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )
    run = DemoRun(proc, n, ports, run_dir, time.monotonic())
    try:
        yield run
    finally:
        if run.out is None:  # the demo test did not wait for it: stop it as Ctrl-C does
            proc.send_signal(signal.SIGINT)
            try:
                run.out, run.err = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                run.out, run.err = proc.communicate()
        worker = re.search(r"^worker +pid (\d+)", run.out or "", re.M)
        if worker and process_running(int(worker.group(1))):
            os.kill(int(worker.group(1)), signal.SIGKILL)
            pytest.fail(f"the demo left its worker (pid {worker.group(1)}) running")


@pytest.mark.usefixtures("demo")  # started first: it runs while this test does
def test_plain_install_evaluates_cdnow(fresh: FreshInstall) -> None:
    events = fresh.work / "cdnow.csv"
    wrote = fresh.custscore("datasets", "cdnow", "--out", str(events))
    assert wrote.returncode == 0, wrote.stderr
    assert "69,659 purchase events of 23,570 customers" in wrote.stdout
    argv = ("evaluate", str(events), "--calibration-end", CALIBRATION_END,
            "--holdout-end", HOLDOUT_END)

    # without the report extra: one line that says what to install, and no report
    began = time.monotonic()
    bare = fresh.custscore(*argv, "--out", str(fresh.work / "bare"), timeout=600)
    bare_s = time.monotonic() - began
    assert bare.returncode != 0
    assert "Traceback" not in bare.stderr + bare.stdout
    lines = bare.stderr.strip().splitlines()
    assert len(lines) == 1 and "custscore[report]" in lines[0], bare.stderr
    assert not (fresh.work / "bare" / "report.html").exists()

    # with it: the whole report
    took = fresh.pip_install(f"{fresh.wheel}[report]")
    began = time.monotonic()
    out = fresh.work / "report"
    done = fresh.custscore(*argv, "--out", str(out), timeout=600)
    evaluate_s = time.monotonic() - began
    assert done.returncode == 0, done.stderr[-3000:]
    for name in ("report.md", "report.html", "metrics.json"):
        assert (out / name).is_file(), f"{name} missing: {sorted(p.name for p in out.iterdir())}"
    json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in html
    print(f"\nfresh install: evaluate without matplotlib {bare_s:.1f} s, pip install "
          f"custscore[report] {took:.1f} s, evaluate on CDNOW {evaluate_s:.1f} s "
          "(the demo running meanwhile)")


def test_plain_install_runs_the_demo(demo: DemoRun) -> None:
    code, out, err = demo.result()
    assert code == 0, err[-3000:]
    assert re.search(r"^worker +pid \d+", out, re.M), out
    assert f"replay    produced {demo.events:,} events in" in out
    assert re.search(rf"worker +{demo.events:,} events consumed", out)
    assert "dead letter  0" in out
    assert f"customers {DEMO_CUSTOMERS}, buyers" in out
    assert "RFM segments  " in out
    assert "stopping the embedded broker and Valkey" in err
    assert not (demo.run_dir / "stack.json").exists()
    for port in demo.ports.values():
        assert port_free(port), f"port {port} still taken after the demo"
    print(f"\nfresh install: demo on {demo.events:,} events of {DEMO_CUSTOMERS} CDNOW "
          f"customers {demo.seconds:.1f} s (from its start, evaluate running meanwhile)")
