"""models.control_group: the holdout assignment of docs/outcomes.md, "Holdout".

The oracle is the definition re-computed here with hashlib, the comparison done exactly over
the rationals (fractions.Fraction(h, 2**64) < fraction), never the module's own output.
"""

from __future__ import annotations

import hashlib
import math
from fractions import Fraction

import numpy as np
import pytest

from models.control_group import ControlGroup


def _held_out(salt: str, customer_id: str, fraction: float) -> bool:
    digest = hashlib.blake2b(f"{salt}|{customer_id}".encode(), digest_size=8).digest()
    return Fraction(int.from_bytes(digest, "big"), 2**64) < Fraction(fraction)


def _version(salt: str, fraction: float) -> str:
    return hashlib.blake2b(f"{salt}|{fraction!r}".encode(), digest_size=16).hexdigest()[:12]


IDS = [f"cust-{i}" for i in range(100_000)]


def test_assignment_is_the_published_hash() -> None:
    group = ControlGroup("custscore-holdout-1", 0.1)
    expected = [_held_out("custscore-holdout-1", c, 0.1) for c in IDS[:5000]]
    assert [group.held_out(c) for c in IDS[:5000]] == expected
    assert group.held_out_many(IDS[:5000]).tolist() == expected


def test_assignment_is_deterministic_and_per_salt() -> None:
    a, b = ControlGroup("s1", 0.3), ControlGroup("s1", 0.3)
    assert np.array_equal(a.held_out_many(IDS[:2000]), b.held_out_many(IDS[:2000]))
    other = ControlGroup("s2", 0.3).held_out_many(IDS[:2000])
    assert not np.array_equal(a.held_out_many(IDS[:2000]), other)


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.02])
def test_fraction_is_honoured_within_binomial_tolerance(fraction: float) -> None:
    held = ControlGroup("custscore-holdout-1", fraction).held_out_many(IDS)
    n = len(IDS)
    # 5 standard deviations of Binomial(n, fraction): a false failure has odds ~ 1 in 3.5e6
    tolerance = 5 * math.sqrt(n * fraction * (1 - fraction))
    assert abs(int(held.sum()) - n * fraction) < tolerance


def test_vectorised_equals_scalar_on_many_ids() -> None:
    group = ControlGroup("x", 0.37)
    many = group.held_out_many(IDS)
    assert many.dtype == np.bool_ and many.shape == (len(IDS),)
    sample = IDS[::97]
    assert many[::97].tolist() == [group.held_out(c) for c in sample]
    assert group.held_out_many([]).shape == (0,)
    assert group.held_out_many(iter(sample)).tolist() == many[::97].tolist()


def test_zero_fraction_disables() -> None:
    group = ControlGroup("custscore-holdout-1", 0.0)
    assert not group.enabled
    assert not group.held_out_many(IDS).any()
    assert not any(group.held_out(c) for c in IDS[:100])
    assert ControlGroup("s", 0.1).enabled


def test_version_is_the_published_hash_and_changes_with_salt_and_fraction() -> None:
    v = ControlGroup("custscore-holdout-1", 0.1).version
    assert v == _version("custscore-holdout-1", 0.1)
    assert len(v) == 12 and int(v, 16) >= 0
    assert ControlGroup("custscore-holdout-2", 0.1).version != v
    assert ControlGroup("custscore-holdout-1", 0.2).version != v
    # the fraction is a float whatever it was given as: 0 and 0.0 are one version
    assert ControlGroup("s", 0).version == ControlGroup("s", 0.0).version == _version("s", 0.0)
    assert ControlGroup("s", np.float64(0.25)).version == _version("s", 0.25)


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5, math.nan, math.inf, "0.1", None, True])
def test_bad_fraction_is_a_clear_value_error(fraction: object) -> None:
    with pytest.raises(ValueError, match="holdout fraction"):
        ControlGroup("s", fraction)  # type: ignore[arg-type]


def test_bad_salt_is_a_clear_value_error() -> None:
    with pytest.raises(ValueError, match="holdout salt"):
        ControlGroup(3, 0.1)  # type: ignore[arg-type]
