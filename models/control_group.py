"""The holdout (control group) of the marketing loop: which customers are never contacted.

A customer is held out when the first 8 bytes of ``blake2b(f"{salt}|{customer_id}")``, read
as a big-endian unsigned integer and divided by 2**64, fall below ``fraction``
(docs/outcomes.md, "Holdout"). The assignment is a pure function of (salt, customer id), so
every worker, the CLI and a replay agree on it without sharing any state, and a customer keeps
their group for as long as the salt and fraction stay the same.

``version`` names the (salt, fraction) pair: the first 12 hex characters of
``blake2b(f"{salt}|{fraction!r}", digest_size=16)``. Every contact and outcome carries it, and
outcomes are counted per version, so changing the salt or the fraction starts a new,
separately measured experiment instead of mixing two assignments in one response rate.
"""

from __future__ import annotations

import hashlib
import math
import numbers
from collections.abc import Iterable
from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = [
    "NO_CONTROL_GROUP",
    "ControlGroup",
]

_SCALE = float(2**64)


def _digest(salt: str, customer_id: str) -> bytes:
    return hashlib.blake2b(f"{salt}|{customer_id}".encode(), digest_size=8).digest()


def _checked_salt(salt: object) -> str:
    if not isinstance(salt, str):
        raise ValueError(f"holdout salt must be a string, got {type(salt).__name__}")
    return salt


def _checked_fraction(fraction: object) -> float:
    """``fraction`` as a float in [0, 1); anything else is a ValueError that says so."""
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real):
        raise ValueError(f"holdout fraction must be a number, got {fraction!r}")
    value = float(fraction)
    if not math.isfinite(value) or not 0.0 <= value < 1.0:
        raise ValueError(f"holdout fraction must be in [0, 1), got {fraction!r}")
    return value


class ControlGroup:
    """Holdout assignment for one (salt, fraction): ``held_out(customer_id)`` and ``version``.

    ``fraction`` must be a finite number with 0 <= fraction < 1; 0 holds out nobody (the
    holdout is disabled). It is kept as a Python float, so ``version`` is the same whether it
    was given as ``0``, ``0.0`` or a numpy scalar.
    """

    __slots__ = ("_fraction", "_salt", "_version")

    def __init__(self, salt: str, fraction: float) -> None:
        self._salt: str = _checked_salt(salt)
        self._fraction: float = _checked_fraction(fraction)
        tag = hashlib.blake2b(f"{salt}|{self._fraction!r}".encode(), digest_size=16).hexdigest()
        self._version: str = tag[:12]

    @property
    def salt(self) -> str:
        return self._salt

    @property
    def fraction(self) -> float:
        return self._fraction

    @property
    def enabled(self) -> bool:
        """False when the fraction is 0: nobody is held out."""
        return self._fraction > 0.0

    @property
    def version(self) -> str:
        """12 hex characters naming this (salt, fraction): the ``holdout_version``."""
        return self._version

    def held_out(self, customer_id: str) -> bool:
        """True when ``customer_id`` is in the control group (never contacted)."""
        position = int.from_bytes(_digest(self._salt, customer_id), "big") / 2**64
        return position < self._fraction

    def held_out_many(self, customer_ids: Iterable[str]) -> npt.NDArray[np.bool_]:
        """``held_out`` of each id, as a bool array in the order given."""
        salt = self._salt
        packed = b"".join(_digest(salt, c) for c in customer_ids)
        positions = np.frombuffer(packed, dtype=">u8").astype(np.float64) / _SCALE
        # uint64 -> float64 rounds to nearest like Python's int / 2**64, and dividing by a
        # power of two is exact, so this is the scalar test bit for bit
        held: npt.NDArray[np.bool_] = positions < self._fraction
        return held

    def __repr__(self) -> str:
        return f"ControlGroup(salt={self._salt!r}, fraction={self._fraction!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ControlGroup):
            return NotImplemented
        return (self._salt, self._fraction) == (other._salt, other._fraction)

    def __hash__(self) -> int:
        return hash((self._salt, self._fraction))


NO_CONTROL_GROUP: Final = ControlGroup("none", 0.0)  # nobody held out (holdout disabled)
