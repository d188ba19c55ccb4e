"""Coverage-guided fuzzing of the input decoder with atheris (optional; not run in CI).

    pip install atheris   # a manylinux wheel for CPython 3.11 exists
    python tests/reliability/fuzz_atheris.py -max_total_time=60

Any exception out of ``EventDecoder.decode``, or an accepted event that breaks the input contract,
is a crash: atheris stops and writes the input to ``crash-*``. The first input byte picks the
topic, the next up to 40 bytes (length-prefixed) the key, the rest is the value.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris

sys.path[:0] = [str(Path(__file__).resolve().parents[2])]

from streams.codec import REASONS, DecodedEvent, EventDecoder, Rejected  # noqa: E402

atheris.instrument_all()  # every loaded Python function, the codec and models.events included

TOPICS = ("customer.purchase", "customer.visit", "customer.complaint")
WALL = 1_900_000_000.0
DECODER = EventDecoder(
    {TOPICS[0]: "purchase", TOPICS[1]: "visit", TOPICS[2]: "complaint"},
    max_payload_bytes=4096,
    max_future_skew_s=86_400,
)


def one(data: bytes) -> None:
    if not data:
        return
    topic = TOPICS[data[0] % 3]
    n = data[1] % 41 if len(data) > 1 else 0
    key = data[2 : 2 + n] if n else None
    value = data[2 + n :]
    out = DECODER.decode(topic, key, value, WALL)
    if isinstance(out, Rejected):
        assert out.reason in REASONS, out
        return
    assert isinstance(out, DecodedEvent)
    assert 1 <= out.ts <= WALL + 86_400
    assert key is None or key == out.customer_id.encode()
    assert out.event_id.isprintable() and out.customer_id.isprintable()


SEEDS = (
    b'\x00\x02c1{"event_id":"e1","customer_id":"c1","ts":852076800000,"amount":12.5}',
    b'\x01\x00{"event_id":"e2","customer_id":"c2","ts":"1997-01-01T00:00:00Z"}',
    b'\x02\x00{"event_id":"e3","customer_id":"c3","ts":852076800000,"severity":"3",'
    b'"status":"open","category":"delivery"}',
)


if __name__ == "__main__":
    corpus = Path(tempfile.mkdtemp(prefix="custscore-fuzz-"))
    for i, seed in enumerate(SEEDS):
        (corpus / f"seed{i}").write_bytes(seed)
    atheris.Setup([*sys.argv, str(corpus)], one)
    atheris.Fuzz()
