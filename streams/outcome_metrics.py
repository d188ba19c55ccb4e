"""Prometheus metrics of the marketing loop: contacts, their outcomes, and the uplift.

:class:`OutcomeMetrics` registers on the worker's registry (the one of
:func:`streams.metrics.build_metrics`):

- ``custscore_contacts_total{kind,reason,action,tier,group}``: contacts made (not suppressed);
- ``custscore_contact_outcomes_total{kind,reason,action,tier,group,responded}``: windows
  closed, ``responded`` "true" (a purchase within the window) or "false";
- ``custscore_contact_response_spend_total{kind,reason,action,tier,group}``: the responding
  purchases' amounts, in currency units;
- ``custscore_uplift{kind}``, ``custscore_uplift_low{kind}``, ``custscore_uplift_high{kind}``:
  treated - holdout response rate of the current holdout version and its Newcombe 95 %
  interval (models.uplift), per kind and over all kinds (``kind="all"``); NaN while a group
  has no closed window.

The counters take the same field -> increment mapping a batch adds to the partition's Redis
counters hash (docs/outcomes.md, "Redis counters"), so they count what was committed; the
holdout version is not a label (it would multiply the series at every salt change): the
Redis counters keep it. The gauges come from the summed Redis counters (all partitions, not
only this worker's), so every worker reports the same value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge

from models.uplift import ALL, GROUPS, OutcomeTable

__all__ = ["OutcomeMetrics"]

_CELL_LABELS = ("kind", "reason", "action", "tier", "group")


class OutcomeMetrics:
    """The marketing loop's counters and uplift gauges on one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        ns = "custscore"
        self.registry = registry
        self.contacts = Counter(
            f"{ns}_contacts_total",
            "Contacts made (nudges and win-backs not suppressed by the contact budget)",
            _CELL_LABELS,
            registry=registry,
        )
        self.outcomes = Counter(
            f"{ns}_contact_outcomes_total",
            "Contact response windows closed, by whether a purchase came within the window",
            (*_CELL_LABELS, "responded"),
            registry=registry,
        )
        self.response_spend = Counter(
            f"{ns}_contact_response_spend_total",
            "Amount of the purchases that answered a contact (currency units)",
            _CELL_LABELS,
            registry=registry,
        )
        self.uplift = Gauge(
            f"{ns}_uplift",
            "Response-rate uplift, treated - holdout, of the current holdout version",
            ["kind"],
            registry=registry,
        )
        self.uplift_low = Gauge(
            f"{ns}_uplift_low",
            "Lower bound of the uplift's Newcombe 95 % interval",
            ["kind"],
            registry=registry,
        )
        self.uplift_high = Gauge(
            f"{ns}_uplift_high",
            "Upper bound of the uplift's Newcombe 95 % interval",
            ["kind"],
            registry=registry,
        )
        self._uplift_kinds: set[str] = set()

    def count(self, counters_delta: Mapping[str, int]) -> None:
        """Add one committed batch's counter increments (the fields it HINCRBY'd).

        ``outcome|...|n`` and ``outcome|...|responded`` of one cell come together in a batch:
        responded ones count as ``responded="true"``, the rest of n as ``"false"``.
        Suppressions, complaints and fields that do not parse are not these metrics'.
        """
        closed: dict[tuple[str, ...], list[int]] = {}
        for field, amount in counters_delta.items():
            parts = field.split("|")
            if parts[0] == "contact" and len(parts) == 7 and parts[5] in GROUPS:
                self.contacts.labels(*parts[1:6]).inc(amount)
            elif parts[0] == "outcome" and len(parts) == 8 and parts[5] in GROUPS:
                cell, stat = tuple(parts[1:6]), parts[7]
                if stat == "spend_cents":
                    self.response_spend.labels(*cell).inc(amount / 100)
                elif stat == "n":
                    closed.setdefault(cell, [0, 0])[0] += amount
                elif stat == "responded":
                    closed.setdefault(cell, [0, 0])[1] += amount
        for cell, (n, responded) in closed.items():
            self.outcomes.labels(*cell, "true").inc(responded)
            self.outcomes.labels(*cell, "false").inc(max(n - responded, 0))

    def set_uplift(self, table: OutcomeTable, holdout_version: str | None = None) -> None:
        """Set the uplift gauges from a table of the summed Redis counters.

        ``holdout_version`` is the current one (``models.control_group.ControlGroup.version``);
        None takes the table's only version. Uplifts of different versions are never pooled,
        so with several versions and none named, and for a kind without a closed window in
        both groups, the gauges are NaN (undefined), as are kinds no longer in the table.
        """
        if holdout_version is None and len(table.versions) == 1:
            holdout_version = table.versions[0]
        current = {
            u.kind: u
            for u in table.uplifts
            if u.holdout_version == holdout_version and u.reason == ALL
        }
        nan = math.nan
        for kind in sorted(self._uplift_kinds | set(current) | {ALL}):
            u = current.get(kind)
            interval = None if u is None else u.interval
            value = None if u is None else u.uplift
            self.uplift.labels(kind).set(nan if value is None else value)
            self.uplift_low.labels(kind).set(nan if interval is None else interval[0])
            self.uplift_high.labels(kind).set(nan if interval is None else interval[1])
        self._uplift_kinds |= set(current) | {ALL}
