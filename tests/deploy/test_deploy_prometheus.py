"""promtool on the deploy rules: syntax, and the unit tests of deploy/prometheus/rules.test.yml.

The live checks (a real Prometheus scraping real workers with the deploy scrape config and
rules, every metric name exported) run against the two cluster workers of
test_deploy_cluster.py, which already have every labelled series after CDNOW.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from deploy_support import RULE_TESTS, RULES, SCRAPE_CONFIG, prometheus_binaries, rule_list


@pytest.fixture(scope="module")
def promtool() -> str:
    return prometheus_binaries()[1]


def test_promtool_checks_the_rules(promtool: str) -> None:
    checked = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rule_list())} rules found" in checked.stdout


def test_promtool_unit_tests_of_the_rules_pass(promtool: str) -> None:
    tested = subprocess.run(
        [promtool, "test", "rules", RULE_TESTS.name],
        cwd=RULE_TESTS.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_promtool_checks_the_compose_scrape_config(promtool: str, tmp_path: Path) -> None:
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    config["rule_files"] = [str(RULES)]  # /etc/prometheus/rules.yml inside the container
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    checked = subprocess.run(
        [promtool, "check", "config", str(path)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
