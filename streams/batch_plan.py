"""Which of a partition's messages a batch applies, holds or drops: pure, over what was read.

A batch's messages of one partition (:class:`PartitionPlan`) meet what Redis says of them:
the applied-offset fence, which event ids were seen before, which customers were forgotten.
:func:`triage` sorts them: at or below the fence (skipped), rejected by the decoder (dead
letters), already seen (duplicates), a replay of a forgotten customer's past (skipped), and
the rest kept. Kept and earlier held events up to the event-time frontier
(:mod:`streams.merge`) are due now; later ones stay held. :mod:`streams.processor` reads,
counts, evaluates, commits and publishes around it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from streams.codec import DecodedEvent, Rejected

__all__ = ["Item", "PartitionPlan", "RawMessage", "Triage", "triage"]


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One consumed message, as the agent got it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


# a message and what the decoder made of it: one item per event (an envelope gives several
# items of one message, all applied or all fenced together)
Item = tuple[RawMessage, DecodedEvent | Rejected]


@dataclass
class PartitionPlan:
    """One partition's share of a batch."""

    partition: int
    items: list[Item]
    held: list[DecodedEvent]  # events the event-time merge held back earlier
    frontier: float = math.inf  # events up to this time may be applied (streams.merge)

    def __post_init__(self) -> None:
        self.still_held: list[DecodedEvent] = self.held  # what stays held after this batch
        self.valid = [(m, d) for m, d in self.items if isinstance(d, DecodedEvent)]
        # only customers with an event to apply now need their state read
        self.customers = list(
            dict.fromkeys(
                [d.customer_id for _, d in self.valid if d.ts <= self.frontier]
                + [e.customer_id for e in self.held if e.ts <= self.frontier]
            )
        )

    @property
    def event_ids(self) -> list[tuple[str, int]]:
        """(event id, event ts) of the valid events: whose dedupe marks the read looks up."""
        return [(d.event_id, d.ts) for _, d in self.valid]


@dataclass
class Triage:
    """What a partition's batch does with its messages and held events."""

    offsets: dict[str, int]  # input topic -> the batch's highest offset above the fence
    cutoffs: dict[str, int]  # customer -> forget cutoff (epoch s), forgotten customers only
    kept: list[DecodedEvent]  # new events, to be marked seen
    due: list[DecodedEvent]  # held and kept events to apply now
    still_held: list[DecodedEvent]  # held and kept events past the frontier
    rejected: list[tuple[RawMessage, Rejected]] = field(default_factory=list)  # dead letters
    fence_skipped: int = 0
    duplicates: int = 0
    forgotten_skipped: int = 0


def triage(
    plan: PartitionPlan,
    fence: dict[str, int],
    seen: Sequence[bool],
    forgotten: Sequence[int],
) -> Triage:
    """Sort ``plan``'s messages and held events, given the partition's applied-offset
    ``fence`` (topic -> last applied offset), whether each of ``plan.event_ids`` was ``seen``
    and each of ``plan.customers``' forget cutoff (0 = not forgotten)."""
    if len(seen) != len(plan.valid):
        raise ValueError(f"{len(seen)} seen flags for {len(plan.valid)} valid events")
    # by event, not by message: an envelope is one message of many events, in plan.valid's
    # order (the items' order), so each valid item takes the next flag
    next_seen = iter(seen).__next__
    cutoffs = {c: f for c, f in zip(plan.customers, forgotten, strict=True) if f}
    offsets: dict[str, int] = {}
    out = Triage({}, cutoffs, [], [], [])
    kept_ids: set[str] = set()
    last: RawMessage | None = None
    fenced = False
    for msg, decoded in plan.items:
        if msg is not last:  # an envelope's events share one message: one look per message
            last = msg
            topic, offset = msg.topic, msg.offset
            if offset > offsets.get(topic, -1):
                offsets[topic] = offset
            fenced = offset <= fence.get(topic, -1)
        if isinstance(decoded, Rejected):
            if fenced:
                out.fence_skipped += 1
            else:
                out.rejected.append((msg, decoded))
            continue
        was_seen = next_seen()
        if fenced:
            out.fence_skipped += 1
            continue
        event_id = decoded.event_id
        if was_seen or event_id in kept_ids:
            out.duplicates += 1
            continue
        if decoded.ts <= cutoffs.get(decoded.customer_id, 0):
            out.forgotten_skipped += 1  # a replay of a forgotten customer's past
            continue
        kept_ids.add(event_id)
        out.kept.append(decoded)
    out.offsets = {t: o for t, o in offsets.items() if o > fence.get(t, -1)}
    # the event-time merge: apply what no input can still precede, hold the rest
    held = [e for e in plan.held if e.ts > cutoffs.get(e.customer_id, 0)]
    frontier = plan.frontier
    if frontier == math.inf:  # no input may still precede anything (no bound): all due
        out.due, out.still_held = held + out.kept, []
    else:
        out.due = [e for e in held + out.kept if e.ts <= frontier]
        out.still_held = [e for e in held + out.kept if e.ts > frontier]
    return out
