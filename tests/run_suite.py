"""``make test``: the whole suite as two pytest runs side by side.

One pytest run keeps about one of the machine's two cores busy: most of the suite waits on
brokers, workers and Valkey. The deploy, load-test and packaging tests (a Valkey Cluster with
two workers and a real Prometheus; ``custscore bench --quick``; a fresh install that builds a
wheel and compiles the kernels) are long and share nothing with the rest, so they run in a
second pytest process beside it (clean-clone CI: 20.5 min as one run, 15.8 min split). Each run
has its own embedded broker, Valkey, free ports and base temp directory. The side run's output
is printed after the main run's; the exit code is the first failing run's (exit code 5, no test
collected, fails like any other).

Arguments are passed to both runs. When they name tests (a path, ``-k``, ``-m``...), there is
one plain pytest run instead: ``make test PYTEST_ARGS="tests/engine -x"``.

    python tests/run_suite.py [pytest arguments]
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

SIDE = ("tests/deploy", "tests/loadtest", "tests/packaging")
BASE = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"]
# options that choose tests: with one of them the caller wants one ordinary run
SELECTING = ("-k", "-m", "--lf", "--last-failed", "--deselect", "--ignore", "--pyargs")


def _selects_tests(args: list[str]) -> bool:
    return any(not a.startswith("-") or a.split("=", 1)[0] in SELECTING for a in args)


def main(args: list[str]) -> int:
    root = Path(__file__).resolve().parents[1]
    if _selects_tests(args):
        return subprocess.call([*BASE, *args], cwd=root)
    temp = Path(tempfile.mkdtemp(prefix="custscore-tests-"))
    side_log = temp / "side.log"
    ignore = [f"--ignore={path}" for path in SIDE]
    with side_log.open("w") as log:
        side = subprocess.Popen(
            [*BASE, f"--basetemp={temp / 'side'}", *SIDE, *args],
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            main_code = subprocess.call(
                [*BASE, f"--basetemp={temp / 'main'}", *ignore, *args], cwd=root
            )
            side_code = side.wait()
        except KeyboardInterrupt:
            side.terminate()
            side.wait()
            raise
    print(f"\n===== {' '.join(SIDE)} (run beside the rest, exit code {side_code}) =====")
    print(side_log.read_text(), end="", flush=True)
    failed = next((code for code in (main_code, side_code) if code != 0), 0)
    if failed:
        print(f"(the failed tests' temp directories are kept under {temp})")
    else:
        shutil.rmtree(temp, ignore_errors=True)
    return failed


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
