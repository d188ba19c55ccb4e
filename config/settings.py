"""The one settings object: env vars with the ``CUSTSCORE_`` prefix and an optional TOML file.

Precedence, highest first: explicit keyword arguments, environment variables
(``CUSTSCORE_<FIELD>``), the TOML file named by ``CUSTSCORE_CONFIG`` (or passed to
:func:`load_settings`), then the defaults below. Modules never read the environment
themselves: they receive a :class:`Settings` (or the few values they need) from their caller.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ENV_PREFIX", "Settings", "SettingsError", "load_settings"]

ENV_PREFIX = "CUSTSCORE_"


class SettingsError(ValueError):
    """A settings file or value that cannot be used; the message is one line."""


class Settings(BaseSettings):
    """Every knob of custscore, with its default. See docs/operations.md for the table."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, frozen=True, extra="forbid", validate_default=True
    )

    # --- embedded stack (development, tests, demo) ---
    run_dir: Path = Field(
        Path(".custscore/run"), description="pids, logs and AOF of the embedded stack"
    )
    broker_host: str = Field("127.0.0.1", description="loopback address the embedded broker binds")
    broker_port: int = Field(9092, ge=1, le=65535, description="embedded broker Kafka port")
    redis_host: str = Field("127.0.0.1", description="loopback address embedded Valkey binds")
    redis_port: int = Field(6379, ge=1, le=65535, description="embedded Valkey port")
    stack_start_timeout_s: float = Field(15.0, gt=0, description="how long `stack up` waits")

    # --- Kafka ---
    kafka_bootstrap: str | None = Field(
        None, description="bootstrap servers; default: the embedded broker's address"
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None

    # --- Redis ---
    redis_url: str | None = Field(None, description="redis:// URL; default: the embedded Valkey")
    redis_username: str | None = None
    redis_password: SecretStr | None = None
    redis_cluster: bool = Field(False, description="use the Redis Cluster client")
    redis_key_prefix: str = Field("cs", description="prefix of every key custscore writes")

    # --- topics ---
    topic_purchase: str = Field(
        "customer.purchase",
        description="input topic of purchase events",
    )
    topic_visit: str = Field(
        "customer.visit",
        description="input topic of visit events",
    )
    topic_complaint: str = Field(
        "customer.complaint",
        description="input topic of complaint events",
    )
    topic_segment_change: str = Field(
        "customer.segment-change",
        description="output topic of segment-change alerts",
    )
    topic_win_back: str = Field(
        "customer.win-back",
        description="output topic of win-back alerts",
    )
    topic_nudge: str = Field(
        "customer.nudge",
        description="output topic of repurchase nudges (treated customers)",
    )
    topic_outcomes: str = Field(
        "customer.outcomes",
        description="output topic of contact outcomes (response windows closed, both groups)",
    )
    topic_holdout: str = Field(
        "customer.holdout",
        description="output topic of the contacts of held-out customers (never sent)",
    )
    topic_scores: str = Field(
        "customer.scores",
        description="output topic of the latest scores per customer (compacted; forget "
        "writes tombstones)",
    )
    topic_dead_letter: str = Field(
        "customer.dead-letter",
        description="output topic of rejected input with the reason",
    )
    partitions: int = Field(
        8, ge=1, description="partition count of the co-partitioned input topics"
    )
    replication_factor: int = Field(1, ge=1)

    # --- marketing loop ---
    holdout_fraction: float = Field(
        0.1,
        ge=0.0,
        lt=1.0,
        description="share of customers in the control group, whose contacts are recorded on "
        "the holdout topic instead of sent (0 = none; changing it starts a new holdout_version)",
    )
    holdout_salt: str = Field(
        "custscore-holdout-1",
        min_length=1,
        description="salt of the control-group hash (changing it starts a new holdout_version)",
    )

    # --- worker ---
    app_id: str = Field("custscore", description="Faust app id = consumer group")
    batch_size: int = Field(1000, ge=1, description="events per take() batch")
    max_batch_events: int = Field(
        20_000,
        ge=1,
        description="events applied per commit: a taken batch of envelopes is applied in "
        "slices of whole messages up to this many events",
    )
    batch_within_s: float = Field(
        0.05, gt=0, description="max wait to fill a batch (latency vs CPU: docs/operations.md §4)"
    )
    fetch_max_wait_ms: int = Field(
        100,
        ge=0,
        le=30000,
        description="longest the broker may hold a fetch waiting for data (Faust fixes 1500)",
    )
    session_timeout_s: float = Field(
        60.0,
        ge=2,
        le=300,
        description="consumer-group session timeout: how soon a dead worker's partitions move",
    )
    rebalance_timeout_s: float = Field(
        60.0, ge=2, le=600, description="longest a rebalance waits for members to rejoin"
    )
    producer_batch_bytes: int = Field(
        262144, ge=16384, description="largest record batch the worker's producer sends"
    )
    web_host: str = "127.0.0.1"
    web_port: int = Field(6066, ge=1, le=65535, description="worker web port (/metrics, /stats)")
    live_clock: bool = Field(False, description="use wall time instead of the partition watermark")
    sweep_interval_s: float = Field(1.0, gt=0, description="silence-timer period")
    sweep_batch: int = Field(
        1000, ge=1, description="due customers re-scored per partition per call"
    )
    snapshot_interval_s: float = Field(
        30.0, gt=0, description="population sketch and KPI refresh period (/stats, gauges)"
    )
    max_task_idle_ms: int = Field(
        10_000,
        ge=0,
        le=600_000,
        description="longest a partition waits for an input that still has data on the "
        "broker before the other inputs run ahead in event time (Kafka Streams' "
        "max.task.idle.ms)",
    )
    publish_unhealthy_after_s: float = Field(
        30.0, gt=0, description="/healthz fails once publishing has failed this long"
    )
    state_buckets: int = Field(
        1024,
        ge=1,
        le=1_048_576,
        description="state hashes per partition; keep customers per hash under Redis's "
        "hash-max-listpack-entries (fixed once states are written)",
    )
    dedupe_shards: int = Field(
        4,
        ge=1,
        le=4096,
        description="dedupe sets per partition and event day; keep event ids per set under "
        "Redis's set-max-intset-entries (fixed once ids are written)",
    )
    dedupe_retention_days: int = Field(
        730, ge=1, description="event-id de-duplication memory, in event-time days"
    )
    max_payload_bytes: int = Field(65536, ge=256)
    max_envelope_events: int = Field(
        10_000, ge=1, description="events a batch envelope may carry (more: dead letter)"
    )
    max_envelope_bytes: int = Field(
        1_000_000,
        ge=1024,
        description="size a batch envelope may have (keep it under the topics' max.message.bytes)",
    )
    max_future_skew_s: int = Field(86400, ge=0, description="reject events this far past wall time")

    # --- model and scoring ---
    params_file: Path | None = Field(
        None, description="model params JSON; default: built-in CDNOW fit"
    )
    effective_window_months: int | None = Field(
        None,
        ge=1,
        le=12,
        description="override the params file's trailing window: 12 retail, 6 dept. store, "
        "3 supermarket",
    )

    @property
    def bootstrap_servers(self) -> str:
        """The Kafka bootstrap list, falling back to the embedded broker."""
        return self.kafka_bootstrap or f"{self.broker_host}:{self.broker_port}"

    @property
    def redis_address(self) -> str:
        """The Redis URL, falling back to the embedded Valkey."""
        return self.redis_url or f"redis://{self.redis_host}:{self.redis_port}/0"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise SettingsError(f"settings file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"settings file {path} is not valid TOML: {exc}") from None
    section = data.get("custscore", data)
    if not isinstance(section, dict):
        raise SettingsError(f"settings file {path}: [custscore] must be a table")
    return section


def load_settings(
    config_file: str | Path | None = None,
    environ: dict[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build the settings from defaults, an optional TOML file, the environment and overrides.

    ``environ`` defaults to ``os.environ``; the TOML file defaults to ``$CUSTSCORE_CONFIG``.
    Raises :class:`SettingsError` with a one-line message on any invalid value.
    """
    env = dict(os.environ if environ is None else environ)
    path = config_file or env.get(f"{ENV_PREFIX}CONFIG")
    file_values = _read_toml(Path(path)) if path else {}
    env_values = {
        key[len(ENV_PREFIX) :].lower(): value
        for key, value in env.items()
        if key.startswith(ENV_PREFIX) and key != f"{ENV_PREFIX}CONFIG"
    }
    known = set(Settings.model_fields)
    unknown = sorted((set(file_values) | set(env_values)) - known)
    if unknown:
        raise SettingsError(f"unknown setting(s): {', '.join(unknown)}")
    merged = {**file_values, **env_values, **overrides}
    try:
        # Values arrive already merged; keep pydantic-settings from re-reading os.environ.
        return Settings.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SettingsError(f"invalid setting {where}: {first['msg']}") from None
