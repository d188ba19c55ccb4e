"""The topics custscore reads and writes: one table built from the settings, and their creation.

:class:`TopicTable` is the one place that knows which topic plays which role: the worker's
subscriptions, the decoder, alert routing, topic creation and the tests all read it.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any, Final

from config.settings import Settings
from models.events import KIND_BY_TYPE
from streams.admin import create_topics
from streams.alert_kinds import ALERT_KINDS

__all__ = [
    "INPUT_TOPIC_SETTINGS",
    "TopicTable",
    "ensure_topics",
    "kafka_security_options",
    "ssl_context",
    "topic_plan",
    "topic_settings",
]


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for SSL / SASL_SSL (trusting ``kafka_ssl_cafile`` if set), else None."""
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        return ssl.create_default_context(cafile=settings.kafka_ssl_cafile)
    return None


def kafka_security_options(settings: Settings) -> dict[str, Any]:
    """aiokafka client keyword arguments for the configured security protocol."""
    options: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    context = ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if settings.kafka_security_protocol.startswith("SASL"):
        password = settings.kafka_sasl_password
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism or "PLAIN"
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = password.get_secret_value() if password else None
    return options


# event type name -> the Settings field naming its input topic
INPUT_TOPIC_SETTINGS: Final = {name: f"topic_{name}" for name in KIND_BY_TYPE}


def topic_settings() -> tuple[str, ...]:
    """Every ``topic_*`` Settings field: inputs, alert kinds, scores, dead letters."""
    return (
        *INPUT_TOPIC_SETTINGS.values(),
        *(kind.topic_setting for kind in ALERT_KINDS),
        "topic_holdout",
        "topic_scores",
        "topic_dead_letter",
    )


@dataclass(frozen=True, slots=True)
class TopicTable:
    """Every topic custscore reads or writes, by role, resolved from the settings once."""

    inputs: dict[str, str]  # topic -> event type name
    alerts: dict[str, str]  # alert kind name -> topic
    holdout: str  # the contacts of held-out customers, whatever their kind
    scores: str  # compacted: the latest scores per customer
    dead_letter: str

    @classmethod
    def from_settings(cls, settings: Settings) -> TopicTable:
        return cls(
            inputs={getattr(settings, field): name for name, field in INPUT_TOPIC_SETTINGS.items()},
            alerts={kind.name: getattr(settings, kind.topic_setting) for kind in ALERT_KINDS},
            holdout=settings.topic_holdout,
            scores=settings.topic_scores,
            dead_letter=settings.topic_dead_letter,
        )

    def input_topic(self, event_type: str) -> str:
        """The input topic of ``event_type`` ("purchase", "visit" or "complaint")."""
        return next(topic for topic, name in self.inputs.items() if name == event_type)

    def input_topics_by_kind(self) -> dict[int, str]:
        """Engine event kind -> input topic."""
        return {KIND_BY_TYPE[name]: topic for topic, name in self.inputs.items()}

    @property
    def outputs(self) -> tuple[str, ...]:
        return (*self.alerts.values(), self.holdout, self.scores, self.dead_letter)

    @property
    def compacted(self) -> frozenset[str]:
        return frozenset({self.scores})


def topic_plan(settings: Settings) -> tuple[dict[str, int], set[str]]:
    """(topic -> partitions, compacted topics) for every topic custscore uses."""
    table = TopicTable.from_settings(settings)
    plan = {topic: settings.partitions for topic in (*table.inputs, *table.outputs)}
    return plan, set(table.compacted)


async def ensure_topics(settings: Settings, timeout_s: float = 30.0) -> None:
    """Create missing topics; existing ones are checked for the partition count."""
    plan, compacted = topic_plan(settings)
    await create_topics(
        settings.bootstrap_servers,
        plan,
        compacted=compacted,
        replication=settings.replication_factor,
        timeout_s=timeout_s,
        client_options=kafka_security_options(settings),
    )
