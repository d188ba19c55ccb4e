"""The topics custscore reads and writes, created with the right shape if missing."""

from __future__ import annotations

import ssl
from typing import Any

from config.settings import Settings
from streams.admin import create_topics

__all__ = ["ensure_topics", "kafka_security_options", "ssl_context", "topic_plan"]


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


def topic_plan(settings: Settings) -> tuple[dict[str, int], set[str]]:
    """(topic -> partitions, compacted topics) for every topic custscore uses."""
    n = settings.partitions
    plan = {
        settings.topic_purchase: n,
        settings.topic_visit: n,
        settings.topic_complaint: n,
        settings.topic_segment_change: n,
        settings.topic_win_back: n,
        settings.topic_scores: n,
        settings.topic_dead_letter: n,
    }
    return plan, {settings.topic_scores}


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
