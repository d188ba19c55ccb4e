"""Stable per-customer digests: the tie-breaker of the exact population ranking.

``engine.ranking`` ranks effective members by spend and, among equal spends, by this
digest, so the value tier and A/B/C/D of tied customers depend only on their ids (the same
in ``custscore score``, ``export`` and any order of the customers).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["customer_digest", "customer_digests"]


def customer_digest(customer_id: str) -> int:
    """The 64-bit blake2b digest of a customer id (UTF-8), as an unsigned integer."""
    return int.from_bytes(
        hashlib.blake2b(customer_id.encode("utf-8"), digest_size=8, person=b"custscore-rank")
        .digest(),
        "big",
    )


def customer_digests(customer_ids: Sequence[str]) -> npt.NDArray[np.uint64]:
    """:func:`customer_digest` of every id, as a uint64 array in the same order."""
    return np.fromiter(
        (customer_digest(c) for c in customer_ids), dtype=np.uint64, count=len(customer_ids)
    )
