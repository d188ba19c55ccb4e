"""docs/scoring.md and the code say the same thing: the default RFM map table is pinned."""

from __future__ import annotations

import re
from pathlib import Path

from engine.segments import DEFAULT_RFM_MAP, RFM_SEGMENT_NAMES

DOC = Path(__file__).resolve().parents[2] / "docs" / "scoring.md"


def rfm_table_from_docs() -> dict[tuple[int, int], str]:
    """(R, FM) -> segment name from the markdown table under 'R \\ FM' in docs/scoring.md."""
    lines = DOC.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"\|\s*R \\ FM\s*\|", line))
    header = [c.strip() for c in lines[start].strip().strip("|").split("|")]
    fms = [int(c) for c in header[1:]]
    cells: dict[tuple[int, int], str] = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        row = [c.strip() for c in line.strip().strip("|").split("|")]
        r = int(row[0].strip("*"))
        for fm, name in zip(fms, row[1:], strict=True):
            cells[(r, fm)] = name
    return cells


def test_default_rfm_map_is_the_table_in_the_docs() -> None:
    table = rfm_table_from_docs()
    assert sorted(table) == [(r, fm) for r in range(1, 6) for fm in range(1, 6)]
    for (r, fm), name in table.items():
        assert RFM_SEGMENT_NAMES[DEFAULT_RFM_MAP[r - 1, fm - 1]] == name, (r, fm)
