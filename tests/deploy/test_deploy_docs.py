"""docs/operations.md cannot drift: the settings table is generated, every alert has a runbook."""

from __future__ import annotations

import re

import pytest
from deploy_support import OPERATIONS, rule_list

from config.settings import Settings
from config.settings_doc import BEGIN, END, render_table, update_document


def test_settings_table_is_generated_from_settings_py() -> None:
    text = OPERATIONS.read_text(encoding="utf-8")
    assert BEGIN in text and END in text
    assert update_document(text) == text, (
        "docs/operations.md is out of date: run `python -m config.settings_doc "
        "docs/operations.md`"
    )
    readme = (OPERATIONS.parent.parent / "README.md").read_text(encoding="utf-8")
    assert update_document(readme) == readme, (
        "README.md's configuration table is out of date: run "
        "`python -m config.settings_doc README.md`"
    )
    table = render_table()
    for name in Settings.model_fields:
        assert f"| `CUSTSCORE_{name.upper()}` | `{name}` |" in table, name


def test_generator_refuses_a_setting_left_out_of_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    from config import settings_doc

    sections = [s for s in settings_doc.SECTIONS if s[0] != "Model and scoring"]
    monkeypatch.setattr(settings_doc, "SECTIONS", (*sections, ("Model", ("params_file",))))
    with pytest.raises(ValueError, match="effective_window_months"):
        render_table()


def test_every_alert_has_a_runbook_entry_and_no_entry_is_stale() -> None:
    text = OPERATIONS.read_text(encoding="utf-8")
    runbook = text[text.index("## 9. Runbook") :]
    headings = re.findall(r"^### (\S+)\s*$", runbook, flags=re.M)
    alerts = [rule["alert"] for rule in rule_list()]
    assert sorted(headings) == sorted(alerts)
    for alert in alerts:
        section = runbook[runbook.index(f"### {alert}") :].split("\n### ", 1)[0]
        assert len(section.split()) > 40, f"{alert}: runbook entry too short"
