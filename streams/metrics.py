"""Prometheus metrics of the worker, built by one factory into a registry passed in."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["WorkerMetrics", "build_metrics"]

_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.5)
_SIZES = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


@dataclass(frozen=True)
class WorkerMetrics:
    """Every metric the worker exports (names are part of the ops contract: docs, rules)."""

    registry: CollectorRegistry
    events_in: Counter
    dead_letter: Counter
    duplicates: Counter
    fence_skipped: Counter
    fence_conflicts: Counter
    forgotten_skipped: Counter
    batch_size: Histogram
    batch_seconds: Histogram
    kernel_seconds: Histogram
    redis_seconds: Histogram
    stage_seconds: Histogram
    redis_errors: Counter
    redis_up: Gauge
    alerts: Counter
    alerts_suppressed: Counter
    watermark: Gauge
    consumer_lag: Gauge
    due_index_size: Gauge
    swept: Counter
    snapshot_age: Gauge
    state_writes: Counter
    state_upgraded: Counter
    state_quarantined: Counter
    outbox_recovered: Counter
    publish_errors: Counter
    publish_failing: Gauge
    timer_errors: Counter
    merge_held: Gauge
    merge_idle_expired: Counter
    # population KPIs merged over every partition's sketch (the same on every worker)
    pop_customers: Gauge
    pop_effective: Gauge
    pop_churn_rate: Gauge
    pop_repurchase_frequency: Gauge
    pop_value_tier: Gauge
    pop_rfm_segment: Gauge
    pop_lifecycle: Gauge
    # issue-15 KPIs (docs/scoring.md, "KPIs"), merged the same way
    pop_second_purchase_rate: Gauge
    pop_pareto_share: Gauge
    pop_month_customers: Gauge
    pop_complaint_rate: Gauge
    pop_complaints_per_100_purchase_days: Gauge
    pop_repurchase_after_complaint: Gauge
    pop_complaints: Gauge
    pop_quadrant: Gauge
    pop_abcd: Gauge


def build_metrics(registry: CollectorRegistry | None = None) -> WorkerMetrics:
    """Create the worker's metrics in ``registry`` (a fresh one by default)."""
    reg = registry if registry is not None else CollectorRegistry()
    ns = "custscore"
    return WorkerMetrics(
        registry=reg,
        events_in=Counter(
            f"{ns}_events_in_total", "Input messages by event type", ["type"], registry=reg
        ),
        dead_letter=Counter(
            f"{ns}_dead_letter_total", "Messages dead-lettered by reason", ["reason"], registry=reg
        ),
        duplicates=Counter(
            f"{ns}_duplicate_events_total", "Events skipped as duplicate event ids", registry=reg
        ),
        fence_skipped=Counter(
            f"{ns}_fence_skipped_total",
            "Redelivered messages at or below the applied-offset fence",
            registry=reg,
        ),
        fence_conflicts=Counter(
            f"{ns}_fence_conflicts_total",
            "Commits refused because another worker wrote the partition",
            registry=reg,
        ),
        forgotten_skipped=Counter(
            f"{ns}_forgotten_skipped_total",
            "Events of forgotten customers at or before their forget cutoff (not applied)",
            registry=reg,
        ),
        batch_size=Histogram(
            f"{ns}_batch_size", "Messages per batch", buckets=_SIZES, registry=reg
        ),
        batch_seconds=Histogram(
            f"{ns}_batch_seconds", "Wall time to process a batch", buckets=_FAST, registry=reg
        ),
        kernel_seconds=Histogram(
            f"{ns}_kernel_seconds", "Time in engine kernels per batch", buckets=_FAST, registry=reg
        ),
        redis_seconds=Histogram(
            f"{ns}_redis_seconds", "Time in Redis calls per batch", buckets=_FAST, registry=reg
        ),
        stage_seconds=Histogram(
            f"{ns}_stage_seconds",
            "Where an event's time to its alert goes, by stage (docs/operations.md, Latency): "
            "fetch (record creation to the consumer), batch_wait (consumer to the agent), read "
            "(Redis read), evaluate, commit (Redis commit), publish (broker acks)",
            ["stage"],
            buckets=_LATENCY,
            registry=reg,
        ),
        redis_errors=Counter(
            f"{ns}_redis_errors_total", "Redis calls that failed and were retried", registry=reg
        ),
        redis_up=Gauge(f"{ns}_redis_up", "1 when the last Redis call succeeded", registry=reg),
        alerts=Counter(
            f"{ns}_alerts_total",
            "Alerts published by kind and reason or scheme (kind holdout: held-out customers' "
            "contacts, reason <kind>:<reason>)",
            ["kind", "reason"],
            registry=reg,
        ),
        alerts_suppressed=Counter(
            f"{ns}_alerts_suppressed_total",
            "Contacts (nudges and win-backs) withheld by the contact budget, by kind and reason",
            ["kind", "reason"],
            registry=reg,
        ),
        watermark=Gauge(
            f"{ns}_watermark_seconds",
            "Event-time watermark by partition (epoch s)",
            ["partition"],
            registry=reg,
        ),
        consumer_lag=Gauge(
            f"{ns}_consumer_lag",
            "Messages behind the partition end, by topic and partition",
            ["topic", "partition"],
            registry=reg,
        ),
        due_index_size=Gauge(
            f"{ns}_due_index_size",
            "State buckets with an entry in the due index (customers waiting for a timer "
            "re-score), by partition",
            ["partition"],
            registry=reg,
        ),
        swept=Counter(
            f"{ns}_swept_customers_total", "Customers re-scored by the silence timer", registry=reg
        ),
        snapshot_age=Gauge(
            f"{ns}_population_snapshot_age_seconds",
            "Wall seconds since the population snapshot was computed",
            registry=reg,
        ),
        state_writes=Counter(
            f"{ns}_state_writes_total", "Customer records written to Redis", registry=reg
        ),
        state_upgraded=Counter(
            f"{ns}_state_upgraded_total",
            "Stored records of an older layout version upgraded on read",
            registry=reg,
        ),
        state_quarantined=Counter(
            f"{ns}_state_quarantined_total",
            "Stored records that could not be decoded, moved to the partition's quarantine hash",
            registry=reg,
        ),
        outbox_recovered=Counter(
            f"{ns}_outbox_recovered_total",
            "Committed outbox entries published on behalf of an earlier attempt or owner",
            registry=reg,
        ),
        publish_errors=Counter(
            f"{ns}_publish_errors_total", "Failed attempts to publish to the broker", registry=reg
        ),
        publish_failing=Gauge(
            f"{ns}_publish_failing_seconds",
            "Seconds the current publish has been failing (0 when publishing works)",
            registry=reg,
        ),
        timer_errors=Counter(
            f"{ns}_timer_errors_total",
            "Exceptions caught in a worker timer (sweep, population refresh), by timer",
            ["timer"],
            registry=reg,
        ),
        merge_held=Gauge(
            f"{ns}_merge_held_events",
            "Events held back by the event-time merge of a partition's three inputs",
            ["partition"],
            registry=reg,
        ),
        merge_idle_expired=Counter(
            f"{ns}_merge_idle_expired_total",
            "Times an input with data on the broker stayed idle past max_task_idle_ms and the "
            "other inputs ran ahead (its events may then arrive late)",
            registry=reg,
        ),
        pop_customers=Gauge(
            f"{ns}_population_customers", "Customers with a state record", registry=reg
        ),
        pop_effective=Gauge(
            f"{ns}_population_effective_members",
            "Customers with a purchase in the trailing effective window",
            registry=reg,
        ),
        pop_churn_rate=Gauge(
            f"{ns}_population_churn_rate",
            "Rolling churn rate of effective members (NaN while undefined; see /stats)",
            registry=reg,
        ),
        pop_repurchase_frequency=Gauge(
            f"{ns}_population_repurchase_frequency_per_year",
            "Mean yearly purchase frequency of effective members",
            registry=reg,
        ),
        pop_value_tier=Gauge(
            f"{ns}_population_value_tier", "Customers by value tier", ["tier"], registry=reg
        ),
        pop_rfm_segment=Gauge(
            f"{ns}_population_rfm_segment", "Customers by RFM segment", ["segment"], registry=reg
        ),
        pop_lifecycle=Gauge(
            f"{ns}_population_lifecycle", "Customers by lifecycle stage", ["stage"], registry=reg
        ),
        pop_second_purchase_rate=Gauge(
            f"{ns}_pop_second_purchase_rate",
            "Share of buyers with two or more purchase days (NaN while there are no buyers)",
            registry=reg,
        ),
        pop_pareto_share=Gauge(
            f"{ns}_pop_pareto_share",
            "Share of trailing-window spend held by the top pareto_top_share of customers "
            "with positive window spend (within 1 %, never above; NaN while undefined)",
            registry=reg,
        ),
        pop_month_customers=Gauge(
            f"{ns}_pop_month_customers",
            "New, returning and lost customers of the calendar month months_ago months before "
            "the month of the latest watermark (0 = that month)",
            ["flow", "months_ago"],
            registry=reg,
        ),
        pop_complaint_rate=Gauge(
            f"{ns}_pop_complaint_rate",
            "Share of customers who filed at least one open complaint",
            registry=reg,
        ),
        pop_complaints_per_100_purchase_days=Gauge(
            f"{ns}_pop_complaints_per_100_purchase_days",
            "Complaints filed open per 100 purchase days, lifetime",
            registry=reg,
        ),
        pop_repurchase_after_complaint=Gauge(
            f"{ns}_pop_repurchase_after_complaint",
            "Share of buyers (who bought before their latest complaint) who bought again after it",
            registry=reg,
        ),
        pop_complaints=Gauge(
            f"{ns}_pop_complaints",
            "Complaints filed, by category, summed over every partition's counters",
            ["category"],
            registry=reg,
        ),
        pop_quadrant=Gauge(
            f"{ns}_pop_quadrant",
            "Effective members by emitted quadrant",
            ["quadrant"],
            registry=reg,
        ),
        pop_abcd=Gauge(
            f"{ns}_pop_abcd",
            "Effective members by emitted A/B/C/D class",
            ["class"],
            registry=reg,
        ),
    )
