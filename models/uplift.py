"""Measured response of the marketing loop: the outcome table and the uplift over the holdout.

Input: the worker's contact counters (docs/outcomes.md, "Redis counters"), a mapping from
counter field to count, summed over partitions:

    contact|<kind>|<reason>|<action>|<tier>|<group>|<holdout_version>            contacts made
    outcome|<kind>|<reason>|<action>|<tier>|<group>|<holdout_version>|<stat>     stat: n,
                                                    responded, spend_cents of closed windows
    suppressed|<kind>|<reason>                      contacts suppressed by the contact budget

(``complaint|<category>`` and any other record type are not outcomes and are left alone.)

Output: one :class:`OutcomeCell` per (holdout version, kind, reason, action, tier, group), and
per holdout version the response-rate uplift, treated rate - holdout rate, with a 95 %
interval, overall, per kind and per (kind, reason). The rate of a group is responded / n over
closed windows (an open window has no outcome yet). The interval is clustered by customer
(the control group randomises customers; a customer's contacts are not independent trials)
from the cluster sums the worker keeps (``cluster|…`` counters: docs/outcomes.md). Where
those sums are missing (counters of an older worker) it falls back to Newcombe's hybrid score
interval for a difference of independent proportions (Newcombe 1998, "Interval estimation for
the difference between independent proportions: comparison of eleven methods", Statistics in
Medicine 17:873-890, method 10), built on the Wilson score interval of each rate, which
treats contacts as independent. A group with n = 0 has no rate, so no uplift and no interval
(None).

Pure: numbers in, numbers and text out, no I/O. ``format_outcome_lines`` is the text table of
``custscore outcomes`` and the demo summary; ``outcome_stats`` is the JSON of ``/stats`` and
``custscore outcomes --json``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

__all__ = [
    "ALL",
    "GROUPS",
    "Z95",
    "ClusterSums",
    "OutcomeCell",
    "OutcomeTable",
    "Uplift",
    "format_outcome_lines",
    "newcombe_interval",
    "outcome_stats",
    "outcome_table",
    "wilson_bounds",
]

GROUPS = ("treated", "holdout")
ALL = "all"  # the kind / reason of an uplift pooled over every kind / reason
STATS = ("n", "responded", "spend_cents")
Z95 = NormalDist().inv_cdf(0.975)  # 1.959963984540054

_CONTACT_PARTS = 7  # contact|kind|reason|action|tier|group|version
_OUTCOME_PARTS = 8  # outcome|kind|reason|action|tier|group|version|stat
_SUPPRESSED_PARTS = 3  # suppressed|kind|reason
_CLUSTER_PARTS = 5  # cluster|scope|group|version|sum (scope: all, a kind, or kind:reason)
_SUMS = ("m", "n2", "yn", "y2")


def wilson_bounds(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson (1927) score interval of successes / n, no continuity correction (n > 0).

    The same formula as ``models.evaluation_metrics.wilson_interval``, kept here on the
    standard library so the CLI and the worker's stats path do not import scipy.
    """
    if n <= 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n > 0, got {successes} of {n}")
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(centre - half, 0.0), min(centre + half, 1.0)


def newcombe_interval(
    x1: int, n1: int, x2: int, n2: int, z: float = Z95
) -> tuple[float, float] | None:
    """Newcombe's hybrid score interval (method 10) for x1/n1 - x2/n2; None if n1 or n2 is 0.

    With (l_i, u_i) the Wilson interval of p_i = x_i / n_i and d = p1 - p2:
    lower = d - z sqrt(l1 (1 - l1) / n1 + u2 (1 - u2) / n2),
    upper = d + z sqrt(u1 (1 - u1) / n1 + l2 (1 - l2) / n2).
    """
    if n1 == 0 or n2 == 0:
        return None
    l1, u1 = wilson_bounds(x1, n1, z)
    l2, u2 = wilson_bounds(x2, n2, z)
    d = x1 / n1 - x2 / n2
    lower = d - z * math.sqrt(l1 * (1 - l1) / n1 + u2 * (1 - u2) / n2)
    upper = d + z * math.sqrt(u1 * (1 - u1) / n1 + l2 * (1 - l2) / n2)
    return max(lower, -1.0), min(upper, 1.0)


def _rate(responded: int, n: int) -> float | None:
    return responded / n if n > 0 else None


@dataclass(frozen=True, slots=True)
class OutcomeCell:
    """Counts of one (holdout version, kind, reason, action, tier, group)."""

    holdout_version: str
    kind: str
    reason: str
    action: str
    tier: str
    group: str
    contacts: int = 0  # contacts made (not suppressed)
    closed: int = 0  # windows closed: outcomes (n)
    responded: int = 0  # closed by a purchase within the window
    spend_cents: int = 0  # the responding purchases' amounts

    @property
    def response_rate(self) -> float | None:
        """responded / closed; None before any window closed."""
        return _rate(self.responded, self.closed)

    @property
    def spend_per_contact(self) -> float | None:
        """Response spend per closed contact in currency units; None before any closed."""
        return self.spend_cents / 100 / self.closed if self.closed > 0 else None


@dataclass(frozen=True, slots=True)
class Uplift:
    """Treated vs holdout response of one holdout version, over a kind and reason (or ALL)."""

    holdout_version: str
    kind: str
    reason: str
    treated_closed: int
    treated_responded: int
    holdout_closed: int
    holdout_responded: int
    # per group, the cluster sums over customers (m, sum n_i^2, sum y_i n_i, sum y_i^2), where
    # the worker keeps them (overall and per kind); None elsewhere
    treated_cluster: ClusterSums | None = None
    holdout_cluster: ClusterSums | None = None

    @property
    def treated_rate(self) -> float | None:
        return _rate(self.treated_responded, self.treated_closed)

    @property
    def holdout_rate(self) -> float | None:
        return _rate(self.holdout_responded, self.holdout_closed)

    @property
    def uplift(self) -> float | None:
        """treated rate - holdout rate; None when either group has no closed outcome."""
        treated, holdout = self.treated_rate, self.holdout_rate
        return None if treated is None or holdout is None else treated - holdout

    @property
    def interval_method(self) -> str:
        """``cluster``: customers are the unit (the control group randomises customers, and a
        customer's contacts are not independent); ``newcombe``: contacts as independent trials,
        where the cluster sums are missing or a group has fewer than two customers."""
        if _cluster_ready(self.treated_cluster) and _cluster_ready(self.holdout_cluster):
            return "cluster"
        return "newcombe"

    @property
    def interval(self) -> tuple[float, float] | None:
        """The 95 % interval of the uplift (:attr:`interval_method`); None when the uplift is."""
        if self.uplift is None:
            return None
        if self.interval_method == "cluster":
            assert self.treated_cluster is not None and self.holdout_cluster is not None
            var = _ratio_variance(
                self.treated_cluster, self.treated_closed, self.treated_responded
            ) + _ratio_variance(self.holdout_cluster, self.holdout_closed, self.holdout_responded)
            half = Z95 * math.sqrt(var)
            return max(self.uplift - half, -1.0), min(self.uplift + half, 1.0)
        return newcombe_interval(
            self.treated_responded, self.treated_closed, self.holdout_responded, self.holdout_closed
        )


def _cluster_ready(sums: ClusterSums | None) -> bool:
    return sums is not None and sums.customers >= 2


def _ratio_variance(sums: ClusterSums, closed: int, responded: int) -> float:
    """Cluster-robust variance of a group's response rate R = Y / N over its customers:
    m / (m - 1) * sum_i (y_i - R n_i)^2 / N^2 (the linearised ratio estimator, with the
    small-sample factor m / (m - 1)); the sum expands into the kept sums of squares."""
    rate = responded / closed
    spread = sums.y2 - 2 * rate * sums.yn + rate * rate * sums.n2
    m = sums.customers
    return max(spread, 0.0) * m / (m - 1) / (closed * closed)


@dataclass(frozen=True, slots=True)
class ClusterSums:
    """One group's outcomes summed per customer: customers with an outcome (m) and the sums of
    n_i^2, y_i n_i and y_i^2 over them (n_i outcomes, y_i responses of customer i)."""

    customers: int = 0
    n2: int = 0
    yn: int = 0
    y2: int = 0


@dataclass(frozen=True)
class OutcomeTable:
    """Every cell and uplift, by holdout version; the budget's suppressions; skipped fields.

    ``versions`` is sorted; the cells are sorted by (version, kind, reason, action, tier), the
    treated group before the holdout, and the uplifts of a version run ALL first, then each
    kind, each followed by its reasons.
    """

    cells: tuple[OutcomeCell, ...]
    uplifts: tuple[Uplift, ...]
    suppressed: tuple[tuple[str, str, int], ...]  # (kind, reason, count), sorted
    skipped: tuple[str, ...]  # contact/outcome/suppressed fields that do not parse

    @property
    def versions(self) -> tuple[str, ...]:
        return tuple(sorted({c.holdout_version for c in self.cells}))

    def uplift(self, holdout_version: str, kind: str = ALL, reason: str = ALL) -> Uplift | None:
        """The uplift of a version over ``kind`` and ``reason`` (ALL pools them), if counted."""
        for u in self.uplifts:
            if (u.holdout_version, u.kind, u.reason) == (holdout_version, kind, reason):
                return u
        return None


def outcome_table(counters: Mapping[str, int]) -> OutcomeTable:
    """The outcome table of summed counter fields (see the module docstring for the layout)."""
    cells: dict[tuple[str, ...], dict[str, int]] = {}
    clusters: dict[tuple[str, str, str], dict[str, int]] = {}  # (version, scope, group)
    suppressed: dict[tuple[str, str], int] = {}
    skipped: list[str] = []
    for field, raw in counters.items():
        parts = field.split("|")
        record = parts[0]
        if record not in ("contact", "outcome", "suppressed", "cluster"):
            continue  # complaint|<category> and anything newer: not outcomes
        count = int(raw)
        if record == "cluster":
            if len(parts) != _CLUSTER_PARTS or parts[2] not in GROUPS or parts[4] not in _SUMS:
                skipped.append(field)
                continue
            sums = clusters.setdefault((parts[3], parts[1], parts[2]), {})
            sums[parts[4]] = sums.get(parts[4], 0) + count
            continue
        if record == "suppressed":
            if len(parts) != _SUPPRESSED_PARTS:
                skipped.append(field)
                continue
            key2 = (parts[1], parts[2])
            suppressed[key2] = suppressed.get(key2, 0) + count
            continue
        width = _CONTACT_PARTS if record == "contact" else _OUTCOME_PARTS
        if len(parts) != width or parts[5] not in GROUPS:
            skipped.append(field)
            continue
        stat = "contacts" if record == "contact" else parts[7]
        if stat not in ("contacts", *STATS):
            skipped.append(field)
            continue
        kind, reason, action, tier, group, version = parts[1:7]
        slot = cells.setdefault((version, kind, reason, action, tier, group), {})
        slot[stat] = slot.get(stat, 0) + count
    table_cells = tuple(
        OutcomeCell(
            version,
            kind,
            reason,
            action,
            tier,
            group,
            contacts=c.get("contacts", 0),
            closed=c.get("n", 0),
            responded=c.get("responded", 0),
            spend_cents=c.get("spend_cents", 0),
        )
        for (version, kind, reason, action, tier, group), c in sorted(cells.items(), key=_order)
    )
    return OutcomeTable(
        cells=table_cells,
        uplifts=tuple(
            _uplifts(
                table_cells,
                {
                    key: ClusterSums(v.get("m", 0), v.get("n2", 0), v.get("yn", 0), v.get("y2", 0))
                    for key, v in clusters.items()
                },
            )
        ),
        suppressed=tuple((k, r, n) for (k, r), n in sorted(suppressed.items())),
        skipped=tuple(sorted(skipped)),
    )


def _order(item: tuple[tuple[str, ...], object]) -> tuple[object, ...]:
    """Cells by version, kind, reason, action, tier, then treated before holdout."""
    *head, group = item[0]
    return (*head, GROUPS.index(group))


def _pooled(
    version: str,
    kind: str,
    reason: str,
    cells: Iterable[OutcomeCell],
    clusters: Mapping[tuple[str, str, str], ClusterSums] | None = None,
) -> Uplift:
    sums = {g: [0, 0] for g in GROUPS}
    for c in cells:
        sums[c.group][0] += c.closed
        sums[c.group][1] += c.responded
    treated = holdout = None
    if clusters is not None:
        scope = kind if reason == ALL else f"{kind}:{reason}"
        treated = clusters.get((version, scope, "treated"))
        holdout = clusters.get((version, scope, "holdout"))
    (t_closed, t_hit), (h_closed, h_hit) = sums["treated"], sums["holdout"]
    return Uplift(version, kind, reason, t_closed, t_hit, h_closed, h_hit, treated, holdout)


def _uplifts(
    cells: tuple[OutcomeCell, ...], clusters: Mapping[tuple[str, str, str], ClusterSums]
) -> list[Uplift]:
    out: list[Uplift] = []
    for version in sorted({c.holdout_version for c in cells}):
        mine = [c for c in cells if c.holdout_version == version]
        out.append(_pooled(version, ALL, ALL, mine, clusters))
        for kind in sorted({c.kind for c in mine}):
            of_kind = [c for c in mine if c.kind == kind]
            out.append(_pooled(version, kind, ALL, of_kind, clusters))
            for reason in sorted({c.reason for c in of_kind}):
                out.append(
                    _pooled(
                        version, kind, reason, [c for c in of_kind if c.reason == reason], clusters
                    )
                )
    return out


# --------------------------------------------------------------------------- presentation


def _ordered_versions(table: OutcomeTable, current_version: str | None) -> list[str]:
    versions = list(table.versions)
    if current_version in versions:
        versions.remove(current_version)
        versions.insert(0, current_version)
    return versions


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _pp(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.2f}pp"


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _grid(header: tuple[str, ...], rows: Sequence[tuple[str, ...]], numeric_from: int) -> list[str]:
    """Aligned columns: text left-aligned, columns from ``numeric_from`` on right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [
            cell.rjust(w) if i >= numeric_from else cell.ljust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  " + "  ".join(cells).rstrip())
    return lines


_CELL_HEADER = (
    "kind", "reason", "action", "tier", "group",
    "contacts", "closed", "responded", "rate", "spend/closed",
)  # fmt: skip
_UPLIFT_HEADER = (
    "kind", "reason", "treated", "rate", "holdout", "rate", "uplift", "low95", "high95",
)  # fmt: skip


def format_outcome_lines(table: OutcomeTable, current_version: str | None = None) -> list[str]:
    """The outcome table as fixed-width text lines: one block per holdout version (the current
    one first, marked), each with its cells and its uplifts, then the budget's suppressions.

    Rates are percentages of closed windows, uplifts percentage points (pp) with their 95 %
    interval (clustered by customer; Newcombe's where the cluster sums are missing); "-" where
    a group has no closed window.
    """
    if not table.cells and not table.suppressed:
        return ["no contacts counted yet"]
    lines: list[str] = []
    for version in _ordered_versions(table, current_version):
        mark = " (current)" if version == current_version else ""
        lines.append(f"holdout version {version}{mark}")
        rows = [
            (
                c.kind, c.reason, c.action, c.tier, c.group,
                str(c.contacts), str(c.closed), str(c.responded),
                _pct(c.response_rate), _money(c.spend_per_contact),
            )
            for c in table.cells
            if c.holdout_version == version
        ]  # fmt: skip
        lines.extend(_grid(_CELL_HEADER, rows, numeric_from=5))
        lines.append(
            "  uplift: treated - holdout response rate, 95 % interval clustered by customer"
        )
        ups = []
        for u in table.uplifts:
            if u.holdout_version != version:
                continue
            interval = u.interval
            low, high = (None, None) if interval is None else interval
            ups.append(
                (
                    u.kind, u.reason,
                    f"{u.treated_responded}/{u.treated_closed}", _pct(u.treated_rate),
                    f"{u.holdout_responded}/{u.holdout_closed}", _pct(u.holdout_rate),
                    _pp(u.uplift), _pp(low), _pp(high),
                )
            )  # fmt: skip
        lines.extend("  " + line for line in _grid(_UPLIFT_HEADER, ups, numeric_from=2))
        lines.append("")
    if table.suppressed:
        lines.append("suppressed by the contact budget")
        counts = [(k, r, str(n)) for k, r, n in table.suppressed]
        lines.extend(_grid(("kind", "reason", "count"), counts, numeric_from=2))
    if table.skipped:
        lines.append(f"{len(table.skipped)} counter fields not understood: {table.skipped[0]!r}…")
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _uplift_json(u: Uplift) -> dict[str, Any]:
    interval = u.interval
    return {
        "kind": u.kind,
        "reason": u.reason,
        "treated": {"closed": u.treated_closed, "responded": u.treated_responded,
                    "rate": u.treated_rate},
        "holdout": {"closed": u.holdout_closed, "responded": u.holdout_responded,
                    "rate": u.holdout_rate},
        "uplift": u.uplift,
        "interval_method": u.interval_method,
        "low": None if interval is None else interval[0],
        "high": None if interval is None else interval[1],
    }  # fmt: skip


def outcome_stats(table: OutcomeTable, current_version: str | None = None) -> dict[str, Any]:
    """The JSON-ready outcome table: per holdout version its cells and uplifts (the current
    version first), the suppressions and the fields that did not parse. None where a rate,
    uplift or interval is undefined (no closed window in a group)."""
    versions = []
    for version in _ordered_versions(table, current_version):
        versions.append(
            {
                "holdout_version": version,
                "current": version == current_version,
                "cells": [
                    {
                        "kind": c.kind,
                        "reason": c.reason,
                        "action": c.action,
                        "tier": c.tier,
                        "group": c.group,
                        "contacts": c.contacts,
                        "closed": c.closed,
                        "responded": c.responded,
                        "response_rate": c.response_rate,
                        "spend_cents": c.spend_cents,
                        "spend_per_contact": c.spend_per_contact,
                    }
                    for c in table.cells
                    if c.holdout_version == version
                ],
                "uplift": [_uplift_json(u) for u in table.uplifts if u.holdout_version == version],
            }
        )
    return {
        "current_version": current_version,
        "versions": versions,
        "suppressed": [{"kind": k, "reason": r, "count": n} for k, r, n in table.suppressed],
        "skipped_fields": list(table.skipped),
    }
