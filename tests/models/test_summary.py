"""models.summary: RFM summary CSV reading and one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.summary import SummaryError, read_summary


def _write(tmp_path: Path, text: str, name: str = "s.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reads_lifetimes_cdnow_files() -> None:
    lifetimes = pytest.importorskip("lifetimes")
    datasets = Path(lifetimes.__file__).parent / "datasets"
    plain = read_summary(datasets / "cdnow_customers_summary.csv")  # header ID,frequency,...
    assert len(plain) == 2357
    assert plain.monetary_value is None
    assert plain.customer_id[0] == "1"
    assert (plain.frequency[0], plain.recency[0], plain.T[0]) == (2.0, 30.43, 38.86)
    money = read_summary(datasets / "cdnow_customers_summary_with_transactions.csv")  # x,t_x,T,zbar
    assert money.monetary_value is not None
    assert money.monetary_value[0] == 22.35
    np.testing.assert_array_equal(money.frequency, plain.frequency)


def test_standard_header_and_optional_monetary(tmp_path: Path) -> None:
    path = _write(tmp_path, "customer_id,frequency,recency,T,monetary_value\n"
                            "a,2,3.5,10,20.5\nb,0,0,4,0\n\n")
    s = read_summary(path)
    assert list(s.customer_id) == ["a", "b"]
    np.testing.assert_array_equal(s.frequency, [2.0, 0.0])
    np.testing.assert_array_equal(s.recency, [3.5, 0.0])
    np.testing.assert_array_equal(s.T, [10.0, 4.0])
    assert s.monetary_value is not None
    np.testing.assert_array_equal(s.monetary_value, [20.5, 0.0])


H = "customer_id,frequency,recency,T\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty file"),
        ("customer_id,frequency,recency\n1,2,3\n", "missing column 'T'"),
        (H, "no customer rows"),
        (H + "1,2,3,4\n2,x,3,4\n", "line 3: bad number in column frequency: 'x'"),
        (H + "1,2,3,4\n2,1,5,4\n", "line 3: recency 5 > T 4"),
        (H + "1,2,3\n", "line 2: 3 fields, header has 4"),
        (H + "1,-1,0,4\n", "line 2: frequency must be a whole number"),
        (H + "1,1.5,1,4\n", "line 2: frequency must be a whole number"),
        (H + "1,0,2,4\n", "line 2: recency must be 0"),
        (H + "1,1,1,nan\n", "line 2: column T is not a finite number"),
        ("customer_id,frequency,recency,T,monetary_value\n1,1,1,2,-3\n",
         "monetary_value must be >= 0"),
    ],
)
def test_errors_are_one_line_with_the_line_number(tmp_path: Path, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(SummaryError) as info:
        read_summary(path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SummaryError, match="cannot read"):
        read_summary(tmp_path / "nope.csv")
