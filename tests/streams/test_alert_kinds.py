"""The alert-kind registry and the topic table agree with the settings, the engine and the docs.

A new kind is its engine rule, one registration, its schema and its topic setting
(docs/design.md, "Adding an alert kind"); these tests fail when one of them is missing.
"""

from __future__ import annotations

from pathlib import Path

from config.settings import Settings, load_settings
from engine import alert_rules
from engine.segments import REASON_NAMES, SCHEME_NAMES
from streams.alert_kinds import ALERT_KINDS, AlertRow, alert_kind
from streams.topics import TopicTable, topic_plan, topic_settings

SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"


def test_every_kind_is_an_engine_kind_with_its_own_name_topic_and_schema() -> None:
    engine_codes = {v for k, v in vars(alert_rules).items() if k.startswith("KIND_")}
    assert {k.code for k in ALERT_KINDS} == engine_codes
    assert len({k.name for k in ALERT_KINDS}) == len(ALERT_KINDS)
    assert len({k.topic_setting for k in ALERT_KINDS}) == len(ALERT_KINDS)
    for kind in ALERT_KINDS:
        assert alert_kind(kind.code) is kind
        assert (SCHEMAS / kind.schema).is_file(), kind.schema
        field = Settings.model_fields[kind.topic_setting]
        assert field.description, f"{kind.topic_setting} needs a description (settings tables)"


def test_topic_settings_are_exactly_the_topic_fields() -> None:
    fields = [name for name in Settings.model_fields if name.startswith("topic_")]
    assert sorted(topic_settings()) == sorted(fields)


def test_the_table_routes_every_kind_and_plans_every_topic() -> None:
    settings = load_settings(
        None, environ={}, **{name: f"x.{name}" for name in topic_settings()}, partitions=3
    )
    table = TopicTable.from_settings(settings)
    assert table.alerts == {k.name: f"x.{k.topic_setting}" for k in ALERT_KINDS}
    assert set(table.inputs.values()) == {"purchase", "visit", "complaint"}
    assert table.input_topic("visit") == "x.topic_visit"
    plan, compacted = topic_plan(settings)
    assert plan == {f"x.{name}": 3 for name in topic_settings()}
    assert compacted == {"x.topic_scores"}


def test_labels_name_the_scheme_or_the_reason() -> None:
    segment = alert_kind(alert_rules.KIND_SEGMENT_CHANGE)
    win_back = alert_kind(alert_rules.KIND_WIN_BACK)
    for scheme in range(1, len(SCHEME_NAMES)):
        row = AlertRow(alert_rules.KIND_SEGMENT_CHANGE, scheme, 0, 1, 2)
        assert segment.label(row) == SCHEME_NAMES[scheme]
        assert segment.identity(row) == (scheme, 1, 2)
    for reason in range(1, len(REASON_NAMES)):
        row = AlertRow(alert_rules.KIND_WIN_BACK, 0, reason, 3, 4)
        assert win_back.label(row) == REASON_NAMES[reason]
        assert win_back.identity(row) == (reason, 0, 0)  # from/to never enter a win-back id
