"""The transactional outbox's record format: a batch's output records packed as one value.

A batch's alerts and score updates are written into the partition's outbox hash by the same fenced
commit that writes the states they describe, under the commit's token, and published only after that
commit succeeded (docs/design.md, "State and guarantees": no phantom alerts). The entry is removed
once the broker acknowledged every record; a worker that dies in between leaves it for the next
owner of the partition, who publishes it before anything else (same ids: at least once).
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

__all__ = ["OutRecord", "pack_records", "unpack_records"]

OutRecord = tuple[str, bytes | None, bytes | None]  # (topic, key, value)

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[tuple[str, bytes | None, bytes | None]])


def pack_records(records: Sequence[OutRecord]) -> bytes:
    """One outbox value holding ``records`` in order."""
    return _encoder.encode(list(records))


def unpack_records(blob: bytes) -> list[OutRecord]:
    """The records of one outbox value."""
    return [tuple(r) for r in _decoder.decode(blob)]  # type: ignore[misc]
