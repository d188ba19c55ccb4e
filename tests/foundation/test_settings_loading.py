"""Settings: ``CUSTSCORE_`` environment variables, TOML file, precedence, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from config.settings import Settings, SettingsError, load_settings


def _one_line(exc: pytest.ExceptionInfo[SettingsError]) -> str:
    message = str(exc.value)
    assert message and "\n" not in message
    return message


def test_defaults_without_environment_or_file() -> None:
    settings = load_settings(environ={})
    assert settings.broker_port == 9092
    assert settings.redis_port == 6379
    assert settings.stack_start_timeout_s == 15.0
    assert settings.bootstrap_servers == "127.0.0.1:9092"
    assert settings.redis_address == "redis://127.0.0.1:6379/0"


def test_environment_needs_the_prefix() -> None:
    settings = load_settings(
        environ={
            "CUSTSCORE_BROKER_PORT": "19092",
            "CUSTSCORE_RUN_DIR": "/tmp/elsewhere",
            "REDIS_PORT": "1",  # no prefix: not ours, ignored
            "PATH": "/usr/bin",
        }
    )
    assert settings.broker_port == 19092
    assert settings.run_dir == Path("/tmp/elsewhere")
    assert settings.redis_port == 6379
    assert settings.bootstrap_servers == "127.0.0.1:19092"


def test_explicit_addresses_win_over_the_embedded_defaults() -> None:
    settings = load_settings(
        environ={
            "CUSTSCORE_KAFKA_BOOTSTRAP": "kafka-1:9093,kafka-2:9093",
            "CUSTSCORE_REDIS_URL": "redis://cache:6380/2",
        }
    )
    assert settings.bootstrap_servers == "kafka-1:9093,kafka-2:9093"
    assert settings.redis_address == "redis://cache:6380/2"


@pytest.mark.parametrize("table", [True, False], ids=["custscore-table", "top-level"])
def test_toml_file(tmp_path: Path, table: bool) -> None:
    body = 'broker_port = 19093\ntopic_purchase = "p.in"\npartitions = 12\n'
    path = tmp_path / "custscore.toml"
    path.write_text(("[custscore]\n" if table else "") + body)
    settings = load_settings(path, environ={})
    assert (settings.broker_port, settings.topic_purchase, settings.partitions) == (
        19093,
        "p.in",
        12,
    )


def test_toml_file_named_by_environment(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[custscore]\nredis_port = 16379\n")
    settings = load_settings(environ={"CUSTSCORE_CONFIG": str(path)})
    assert settings.redis_port == 16379


def test_precedence_overrides_then_environment_then_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[custscore]\nbroker_port = 1111\nredis_port = 2222\nweb_port = 3333\n")
    env = {"CUSTSCORE_BROKER_PORT": "4444", "CUSTSCORE_REDIS_PORT": "5555"}
    settings = load_settings(path, environ=env, broker_port=6666)
    assert (settings.broker_port, settings.redis_port, settings.web_port) == (6666, 5555, 3333)


def test_settings_are_frozen() -> None:
    settings = load_settings(environ={})
    with pytest.raises(ValueError, match="frozen"):
        settings.broker_port = 1
    assert isinstance(settings, Settings)


@pytest.mark.parametrize(
    ("environ", "fragment"),
    [
        ({"CUSTSCORE_BROKER_PROT": "9092"}, "broker_prot"),
        ({"CUSTSCORE_NOPE": "1", "CUSTSCORE_ALSO_NOPE": "2"}, "also_nope, nope"),
    ],
)
def test_unknown_environment_key_is_one_line_error(environ: dict[str, str], fragment: str) -> None:
    with pytest.raises(SettingsError) as exc:
        load_settings(environ=environ)
    message = _one_line(exc)
    assert "unknown setting" in message and fragment in message


def test_unknown_file_key_is_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[custscore]\nbatch_sise = 10\n")
    with pytest.raises(SettingsError) as exc:
        load_settings(path, environ={})
    assert "batch_sise" in _one_line(exc)


@pytest.mark.parametrize(
    ("environ", "fragment"),
    [
        ({"CUSTSCORE_BROKER_PORT": "abc"}, "broker_port"),
        ({"CUSTSCORE_REDIS_PORT": "70000"}, "redis_port"),
        ({"CUSTSCORE_PARTITIONS": "0"}, "partitions"),
        ({"CUSTSCORE_STACK_START_TIMEOUT_S": "-1"}, "stack_start_timeout_s"),
        ({"CUSTSCORE_KAFKA_SECURITY_PROTOCOL": "TLS"}, "kafka_security_protocol"),
        ({"CUSTSCORE_REDIS_CLUSTER": "maybe"}, "redis_cluster"),
    ],
)
def test_invalid_value_is_one_line_error(environ: dict[str, str], fragment: str) -> None:
    with pytest.raises(SettingsError) as exc:
        load_settings(environ=environ)
    message = _one_line(exc)
    assert message.startswith("invalid setting") and fragment in message


def test_invalid_value_in_file_is_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[custscore]\nbatch_size = "lots"\n')
    with pytest.raises(SettingsError) as exc:
        load_settings(path, environ={})
    assert "batch_size" in _one_line(exc)


def test_broken_or_missing_file_is_one_line_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[custscore\nbroker_port = \n")
    with pytest.raises(SettingsError) as exc:
        load_settings(broken, environ={})
    assert "not valid TOML" in _one_line(exc)
    with pytest.raises(SettingsError) as exc:
        load_settings(tmp_path / "missing.toml", environ={})
    assert "not found" in _one_line(exc)


@pytest.mark.parametrize(
    ("extra_env", "fragment"),
    [
        ({"CUSTSCORE_BROKER_PORT": "not-a-port"}, "broker_port"),
        ({"CUSTSCORE_NO_SUCH_KNOB": "1"}, "no_such_knob"),
    ],
)
def test_cli_reports_bad_settings_as_one_line(
    tmp_path: Path, extra_env: dict[str, str], fragment: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CUSTSCORE_")}
    env.update(CUSTSCORE_RUN_DIR=str(tmp_path / "run"), **extra_env)
    result = subprocess.run(
        [sys.executable, "-m", "custscore", "stack", "status"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("custscore: error: ")
    assert fragment in lines[0]
    assert "Traceback" not in result.stderr
