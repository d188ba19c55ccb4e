"""Build a private workspace for mutation-testing engine/ with mutmut (see docs/mutation.md).

    python tests/engine/mutmut_workspace.py /tmp/custscore-mutation [--ref HEAD]
    cd /tmp/custscore-mutation && NUMBA_DISABLE_JIT=1 MUTATION_MAX_EXAMPLES=10 mutmut run

Never touches the checkout it is run from: the workspace is ``git archive REF`` of it,
unpacked elsewhere, then prepared so mutmut can mutate the numba kernels:

- mutmut does not mutate decorated functions, and every kernel carries ``@njit``. The run
  sets NUMBA_DISABLE_JIT=1, under which ``njit(...)(f)`` returns ``f`` itself, so the
  workspace drops those decorator lines: the same code runs, now visible to mutmut.
- Kernels read record fields as attributes (``st.flags``), which numba compiles and plain
  numpy scalars (np.void) do not support. ``tests/conftest.py`` in the workspace gets a shim
  that re-types the engine's record dtypes (same fields and layout) with a record class
  whose attribute access goes to the fields first and returns Python numbers, as numba's
  typed arithmetic would (no uint8 overflow errors on ``severity * 1000``).
- Hypothesis examples are capped by MUTATION_MAX_EXAMPLES, derandomized and not shrunk,
  so each mutant's run is short and its verdict repeatable.
- setup.cfg gets the [mutmut] section (modules to mutate, tests to run).
"""

from __future__ import annotations

import argparse
import io
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

DEFAULT_MODULES = (
    "kernels",
    "scoring",
    "alerts",
    "timeline",
    "population",
    "state",
    "btyd",
    "calendar",
    "batch",
)
# Tests that exercise engine/ (the engine-only part of the suite). Deselected, to keep one
# mutant's run short with the kernels interpreted: the import-hygiene test (a fresh
# interpreter, no kernel call), and the whole-data-set comparisons that take 5-40 s each
# as plain Python (the per-example oracle tests cover the same functions).
TEST_SELECTION = ("tests/engine",)
DESELECT = (
    "tests/engine/test_btyd.py::test_engine_btyd_imports_only_numpy_numba_stdlib",
    "tests/engine/test_btyd.py::test_clv_matches_lifetimes_every_customer",
    "tests/engine/test_btyd.py::test_hyp2f1_matches_scipy_near_one",
    "tests/engine/test_btyd.py::test_expected_purchases_matches_lifetimes_every_customer[520.0]",
    "tests/engine/test_population.py::test_score_states_ranks_identical_customers",
)

SHIM = '''
# ---- mutation-run shim (added by tests/engine/mutmut_workspace.py) ----
import os as _os

import numpy as _np

if _os.environ.get("NUMBA_DISABLE_JIT") == "1":

    class _Record(_np.record):
        """np.record whose attributes are its fields first (``flags``, ``T``), as Python
        numbers: what a numba kernel sees when it reads a record field."""

        def __getattribute__(self, attr):
            fields = _np.void.__getattribute__(self, "dtype").fields
            if fields is not None and attr in fields:
                value = _np.void.getfield(self, *fields[attr][:2])
                return value if isinstance(value, _np.ndarray) else value.item()
            return _np.record.__getattribute__(self, attr)

    def _as_record(dt):
        return _np.dtype((_Record, dt))

    import engine.state as _state

    for _name in ("STATE_DTYPE", "STATE_DTYPE_V1", "EVENT_DTYPE"):
        setattr(_state, _name, _as_record(getattr(_state, _name)))
    import engine.scoring as _scoring

    _scoring.SCORES_DTYPE = _as_record(_scoring.SCORES_DTYPE)
    import engine.alert_rules as _alerts

    _alerts.ALERT_DTYPE = _as_record(_alerts.ALERT_DTYPE)
    import engine.timeline as _timeline

    _timeline.TIMELINE_ALERT_DTYPE = _as_record(_timeline.TIMELINE_ALERT_DTYPE)

_cap = int(_os.environ.get("MUTATION_MAX_EXAMPLES", "0"))
if _cap > 0:
    import hypothesis as _hyp

    _init = _hyp.settings.__init__

    def _capped_init(self, parent=None, **kwargs):
        if kwargs.get("max_examples", 0) > _cap:
            kwargs["max_examples"] = _cap
        _init(self, parent, **kwargs)

    _hyp.settings.__init__ = _capped_init
    # no shrinking: a mutant is killed by the first failing example, not a minimal one
    _hyp.settings.register_profile(
        "mutation",
        max_examples=_cap,
        derandomize=True,
        database=None,
        deadline=None,
        phases=(_hyp.Phase.explicit, _hyp.Phase.reuse, _hyp.Phase.generate),
        report_multiple_bugs=False,
    )
    _hyp.settings.load_profile("mutation")
# ---- end of shim ----
'''


def build(
    dest: Path, ref: str, modules: tuple[str, ...], overlay: list[str], deselect: list[str]
) -> str:
    repo = Path(__file__).resolve().parents[2]
    commit = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", ref], check=True, capture_output=True, text=True
    ).stdout.strip()
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", "--format=tar", commit],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    for rel in overlay:  # working-tree files to test with (e.g. new, not yet committed tests)
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / rel, dest / rel)
    for path in sorted((dest / "engine").glob("*.py")):
        text = path.read_text()
        stripped = re.sub(r"(?m)^@njit\([^)]*\)\n", "", text)
        path.write_text(stripped)
    conftest = dest / "tests" / "conftest.py"
    text = conftest.read_text()
    head, sep, tail = text.partition("from __future__ import annotations\n")
    conftest.write_text(head + sep + SHIM + tail)
    only = "\n".join(f"    engine/{m}.py" for m in modules)
    selection = "\n".join(f"    {t}" for t in TEST_SELECTION)
    deselect_args = "\n".join(f"    --deselect={t}" for t in (*DESELECT, *deselect))
    (dest / "setup.cfg").write_text(
        "[mutmut]\n"
        "source_paths = engine\n"
        f"only_mutate =\n{only}\n"
        f"pytest_add_cli_args_test_selection =\n{selection}\n"
        f"pytest_add_cli_args =\n    -p\n    no:cacheprovider\n{deselect_args}\n"
        "also_copy =\n    loadtest\n    models\n    config\n    custscore\n    streams\n    docs\n"
        "    deploy\n"
        "timeout_multiplier = 4.0\n"
        "use_git_change_detection = false\n"
    )
    (dest / "MUTATION_COMMIT").write_text(commit + "\n")
    return commit


def sample(dest: Path, sizes: str, seed: int = 13) -> list[str]:
    """A seeded random sample of the generated mutants' names, ``module=count`` per module."""
    import json
    import random

    rng = random.Random(seed)
    names: list[str] = []
    for item in sizes.split(","):
        module, count = item.split("=")
        meta = json.loads((dest / "mutants" / "engine" / f"{module}.py.meta").read_text())
        keys = sorted(meta["exit_code_by_key"])
        names += sorted(rng.sample(keys, min(int(count), len(keys))))
    return names


def tool_venv(path: Path) -> None:
    """A venv with mutmut that sees this project's venv (mutmut needs click >= 8.4.2,
    faust-streaming click < 8.4: mutmut must not be installed into .venv itself)."""
    if (path / "bin" / "mutmut").exists():
        return
    import sysconfig
    import venv

    venv.EnvBuilder(with_pip=True).create(path)
    py = path / "bin" / "python"
    purelib = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    project = sysconfig.get_paths()["purelib"]
    Path(purelib, "zz_project_venv.pth").write_text(f"import site; site.addsitedir({project!r})\n")
    subprocess.run([str(py), "-m", "pip", "install", "--quiet", MUTMUT], check=True)


MUTMUT = "mutmut==3.8.1"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dest", type=Path)
    parser.add_argument("--tool-venv", type=Path, help="create this mutmut venv if missing")
    parser.add_argument("--print-sample", metavar="MODULE=N,...", help="print mutant names")
    parser.add_argument("--ref", default="HEAD")
    parser.add_argument("--modules", default=",".join(DEFAULT_MODULES))
    parser.add_argument("--overlay", action="append", default=[], help="working-tree file")
    parser.add_argument("--deselect", action="append", default=[], help="a test id to skip")
    args = parser.parse_args()
    if args.print_sample:
        print(" ".join(sample(args.dest, args.print_sample)))
        return 0
    if args.tool_venv:
        tool_venv(args.tool_venv)
    modules = tuple(args.modules.split(","))
    commit = build(args.dest, args.ref, modules, args.overlay, args.deselect)
    print(f"workspace {args.dest} at {commit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
