"""Security: least-privilege Valkey user, SASL settings pass-through, no PII in logs, forget.

The worker of these tests (conftest ``secured``) talks to Valkey as an ACL user that may touch
only ``<prefix>:*`` keys and send only the commands custscore uses; its password comes from
settings (``redis_username`` / ``redis_password``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import redis
from fixtures.streaming import run_script

from config.settings import load_settings
from reliability.conftest import ACL_COMMANDS, Secured
from reliability.support import run_coro
from reliability.test_bad_input import send_and_settle
from streams.keys import PartitionKeys, partition_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.faults,
    pytest.mark.timeout(600),
]

T_1997 = 852076800000
SECRET_TEXT = "ZX-SECRET-COMPLAINT-TEXT-4471"
PII_CUSTOMERS = ("pii-7f3a9c-zelda", "pii-c0ffee-ymir", "pii-0b5e55-xavier")


def _client(s: object, **kw: object) -> redis.Redis:
    return redis.Redis.from_url(s.redis_address, **kw)  # type: ignore[attr-defined]


def test_the_acl_user_is_refused_everything_else(secured: Secured) -> None:
    s = secured.settings
    password = s.redis_password.get_secret_value() if s.redis_password else None
    acl = _client(s, username=s.redis_username, password=password)
    try:
        assert acl.ping()
        acl.set(f"{s.redis_key_prefix}:probe", b"1")  # its own prefix: allowed
        for forbidden in (
            lambda: acl.flushall(),
            lambda: acl.config_get("*"),
            lambda: acl.keys("*"),
            lambda: acl.get("someone-else:key"),  # another prefix
            lambda: acl.set("cs-other:{p0}:s:x", b"1"),
            lambda: acl.execute_command("ACL", "LIST"),
            lambda: acl.execute_command("CLIENT", "LIST"),
        ):
            with pytest.raises(redis.exceptions.NoPermissionError):
                forbidden()
        # a script cannot reach outside the prefix either
        with pytest.raises(redis.exceptions.NoPermissionError):
            acl.eval("return redis.call('GET', KEYS[1])", 1, "elsewhere:k")
    finally:
        acl.close()
    with pytest.raises(redis.exceptions.AuthenticationError):
        _client(s, username=s.redis_username, password="wrong").ping()
    assert secured.worker.running()
    print(f"\nACL: ~{s.redis_key_prefix}:* +{' +'.join(ACL_COMMANDS)}")


def test_sasl_settings_reach_faust_and_the_cli_clients() -> None:
    """The embedded broker (Tansu 0.6) has only an on/off --authentication switch and no way to
    provision SASL users, so SASL/PLAIN is checked at the hand-over to Faust and aiokafka."""
    from custscore.clients import kafka_options
    from streams.kafka import faust_broker_options as _broker_options

    s = load_settings(
        environ={},
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="svc-custscore",
        kafka_sasl_password="s3cr3t",
    )
    creds = _broker_options(s)["broker_credentials"]
    assert creds.username == "svc-custscore" and creds.password == "s3cr3t"
    assert str(creds.mechanism).endswith("PLAIN") and creds.ssl_context is None
    opts = kafka_options(s)
    assert opts["security_protocol"] == "SASL_PLAINTEXT" and opts["sasl_mechanism"] == "PLAIN"
    assert opts["sasl_plain_username"] == "svc-custscore"
    assert opts["sasl_plain_password"] == "s3cr3t"
    ssl = load_settings(
        environ={},
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_username="u",
        kafka_sasl_password="p",
    )
    assert _broker_options(ssl)["broker_credentials"].ssl_context is not None
    assert "s3cr3t" not in repr(s)  # the secret never shows in a settings dump


def test_logs_and_metrics_carry_no_customer_ids_or_complaint_text(secured: Secured) -> None:
    s = secured.settings
    for i, customer in enumerate(PII_CUSTOMERS):
        part = partition_for(customer, s.partitions)
        send_and_settle(
            secured,
            s.topic_purchase,
            part,
            customer.encode(),
            json.dumps(
                {"event_id": f"pii-p{i}", "customer_id": customer, "ts": T_1997, "amount": 20}
            ).encode(),
        )
        send_and_settle(
            secured,
            s.topic_complaint,
            part,
            customer.encode(),
            json.dumps(
                {
                    "event_id": f"pii-c{i}",
                    "customer_id": customer,
                    "ts": T_1997 + 86_400_000,
                    "severity": 5,
                    "status": "open",
                    "category": "service",
                    "text": f"{SECRET_TEXT} call me at +1-555-0100, {customer}@example.com",
                }
            ).encode(),
        )
        # and a bad one: its text must not reach the log through an error message either
        send_and_settle(
            secured,
            s.topic_complaint,
            part,
            customer.encode(),
            json.dumps(
                {
                    "event_id": f"pii-x{i}",
                    "customer_id": customer,
                    "ts": T_1997,
                    "severity": 9,
                    "text": SECRET_TEXT,
                }
            ).encode(),
        )
    time.sleep(2.0)  # let timers and the population refresh log whatever they log
    log = secured.worker.log_path.read_text(errors="replace")
    assert "[INFO]" in log  # the capture really is at info level
    reply = secured.worker.watch.get("/metrics")
    assert reply is not None
    metrics = reply[1].decode()
    for needle in (SECRET_TEXT, "555-0100", "example.com", *PII_CUSTOMERS):
        assert needle not in log, f"{needle!r} in the worker log"
        assert needle not in metrics, f"{needle!r} in /metrics"


def _everything_of(admin: redis.Redis, prefix: str, needle: bytes) -> list[str]:
    """Every key, set/zset member, hash field or value under ``prefix`` mentioning ``needle``."""
    found: list[str] = []
    for key in admin.scan_iter(match=f"{prefix}:*", count=1000):
        if needle in key:
            found.append(f"key {key!r}")
        kind = admin.type(key)
        if kind == b"string":
            if needle in (admin.get(key) or b""):
                found.append(f"value of {key!r}")
        elif kind == b"zset":
            found += [f"zset {key!r} member" for m in admin.zrange(key, 0, -1) if needle in m]
        elif kind == b"set":
            found += [f"set {key!r} member" for m in admin.smembers(key) if needle in m]
        elif kind == b"hash":
            for f, v in admin.hgetall(key).items():
                if needle in f or needle in v:
                    found.append(f"hash {key!r} field {f!r}")
    return found


async def _tombstones(settings: object, customer: str) -> list[object]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from custscore.clients import kafka_options

    consumer = AIOKafkaConsumer(
        **kafka_options(settings),
        group_id=None,  # type: ignore[arg-type]
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        tp = TopicPartition(settings.topic_scores, partition_for(customer, settings.partitions))  # type: ignore[attr-defined]
        consumer.assign([tp])
        await consumer.seek_to_beginning()
        found: list[object] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            got = await consumer.getmany(timeout_ms=500)
            found += [r for r in got.get(tp, []) if r.key == customer.encode()]
            if any(r.value is None for r in found):  # type: ignore[attr-defined]
                break
        return found
    finally:
        await consumer.stop()


def test_forget_leaves_nothing_and_only_newer_events_come_back(
    secured: Secured, tmp_path: Path
) -> None:
    s = secured.settings
    customer = "forget-me-8d1c"
    part = partition_for(customer, s.partitions)
    keys = PartitionKeys(s.redis_key_prefix, part)
    events = [
        {
            "event_id": f"fm-{i}",
            "customer_id": customer,
            "ts": T_1997 + i * 30 * 86_400_000,
            "amount": 10 + i,
        }
        for i in range(3)
    ]
    for e in events:
        send_and_settle(secured, s.topic_purchase, part, customer.encode(), json.dumps(e).encode())
    send_and_settle(
        secured,
        s.topic_visit,
        part,
        customer.encode(),
        json.dumps(
            {"event_id": "fm-v", "customer_id": customer, "ts": T_1997 + 70 * 86_400_000}
        ).encode(),
    )
    admin = secured.admin
    assert admin.hexists(*keys.state(customer))
    assert _everything_of(admin, s.redis_key_prefix, customer.encode())  # there is a trace to erase

    result = run_script(s, "forget", customer)  # as the ACL user: forget needs nothing more
    assert result.returncode == 0, result.stderr
    assert _everything_of(admin, s.redis_key_prefix, customer.encode()) == []
    records = run_coro(_tombstones(s, customer))
    assert records and records[-1].value is None  # type: ignore[attr-defined]

    # the same events replayed with new event ids (dedupe cannot catch them): not resurrected
    for e in events:
        replayed = {**e, "event_id": f"{e['event_id']}-again"}
        send_and_settle(
            secured, s.topic_purchase, part, customer.encode(), json.dumps(replayed).encode()
        )
    assert not admin.hexists(*keys.state(customer))
    assert _everything_of(admin, s.redis_key_prefix, customer.encode()) == []
    # an event newer than the forget starts a fresh record. "Newer" means after the cutoff,
    # which is the partition's watermark at the forget (other customers' events move it),
    # not the customer's own last event.
    cutoff = int(admin.get(keys.forgotten(customer)) or 0)
    fresh = {
        "event_id": "fm-new",
        "customer_id": customer,
        "ts": (cutoff + 86_400) * 1000,
        "amount": 99,
    }
    send_and_settle(secured, s.topic_purchase, part, customer.encode(), json.dumps(fresh).encode())
    assert admin.hexists(*keys.state(customer))
    inspect = run_script(s, "inspect", customer)
    assert inspect.returncode == 0, inspect.stderr
    state = json.loads(inspect.stdout)["state"]
    assert state["purchase_days"] == 1 and state["gross_cents"] == 9900
