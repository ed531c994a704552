"""ServiceConfig from flags, environment and TOML, validated; ``serve``'s argument parser."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from service.config import ServiceConfig
from service.errors import ConfigError
from service.serve import add_serve_arguments


def parse(*argv: str) -> dict:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    return vars(parser.parse_args(argv))


def test_precedence_flags_over_env_over_file_over_defaults(tmp_path: Path) -> None:
    file = tmp_path / "serve.toml"
    file.write_text('[serve]\nmodels = "/srv/models"\nport = 6000\nmax_batch_rows = 64\nbatching = false\n')
    env = {"LATENTWATCH_PORT": "7000", "LATENTWATCH_GRACE_S": "3.5", "OTHER": "x"}
    flags = parse("--port", "8000", "--max-batch-delay", "0.01")
    flags.pop("config_file")
    config = ServiceConfig.load(flags, env=env, config_file=file)
    assert config.port == 8000  # flag
    assert config.grace_s == 3.5  # environment
    assert config.max_batch_rows == 64  # file
    assert config.batching is False  # file
    assert config.models == Path("/srv/models")
    assert config.max_batch_delay_s == 0.01
    assert config.metrics_port == 9108  # default


def test_config_file_from_the_environment(tmp_path: Path) -> None:
    file = tmp_path / "c.toml"
    file.write_text('models = "m"\nlog_format = "json"\n')
    config = ServiceConfig.load({}, env={"LATENTWATCH_CONFIG": str(file)})
    assert config.log_format == "json"


def test_no_batching_flag_and_defaults() -> None:
    flags = parse("--models", "m", "--no-batching")
    flags.pop("config_file")
    config = ServiceConfig.load(flags, env={})
    assert config.batching is False
    assert config.models == Path("m")
    assert ServiceConfig.load({"models": "m"}, env={}).batching is True


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "models is required"),
        ({"LATENTWATCH_MODELS": "m", "LATENTWATCH_PORT": "http"}, "LATENTWATCH_PORT: port must be an integer"),
        ({"LATENTWATCH_MODELS": "m", "LATENTWATCH_PORT": "70000"}, "port must be a TCP port"),
        ({"LATENTWATCH_MODELS": "m", "LATENTWATCH_MAX_BATCH_ROWS": "0"}, "max_batch_rows must be at least 1"),
        ({"LATENTWATCH_MODELS": "m", "LATENTWATCH_MAX_BATCH_DELAY_S": "-1"}, "max_batch_delay_s"),
        ({"LATENTWATCH_MODELS": "m", "LATENTWATCH_BATCHING": "maybe"}, "batching must be true or false"),
        ({"LATENTWATCH_MODELS": "m", "LATENTWATCH_DEVICE": "tpu"}, "device must be one of"),
        ({"LATENTWATCH_MODELS": "m", "LATENTWATCH_RELOAD_SETTLE_S": "-1"}, "reload_settle_s"),
        ({"LATENTWATCH_MODELS": "m", "LATENTWATCH_TLS_CERT": "/nonexistent.pem"}, "tls_key"),
        ({"LATENTWATCH_MODELS": "m", "LATENTWATCH_AUTH_TOKENS_FILE": "/nonexistent"}, "not a readable file"),
    ],
)
def test_bad_settings_name_the_setting_and_value(env: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        ServiceConfig.load({}, env=env)


def test_bad_config_file(tmp_path: Path) -> None:
    file = tmp_path / "bad.toml"
    file.write_text('models = "m"\nmax_batch_size = 3\n')
    with pytest.raises(ConfigError, match=r"unknown setting\(s\) \['max_batch_size'\]"):
        ServiceConfig.load({}, env={}, config_file=file)
    file.write_text("models = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        ServiceConfig.load({}, env={}, config_file=file)
    with pytest.raises(ConfigError, match="cannot read"):
        ServiceConfig.load({}, env={}, config_file=tmp_path / "missing.toml")


def test_config_is_frozen() -> None:
    config = ServiceConfig(models=Path("m")).validate()
    with pytest.raises(AttributeError):
        config.port = 1  # type: ignore[misc]
    assert config.replace(port=1).port == 1


def test_json_logs_carry_the_request_id(capsys) -> None:
    import json
    import logging

    from service.grpc.interceptors import request_id
    from service.serve import configure_logging

    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging("json", "info")
        token = request_id.set("req-7")
        logging.getLogger("service.test").info("scored %d rows", 3)
        request_id.reset(token)
        logging.getLogger("service.test").debug("not shown at INFO")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["message"] == "scored 3 rows"
    assert entry["request_id"] == "req-7"
    assert entry["level"] == "INFO"
    assert entry["logger"] == "service.test"


def test_bearer_tokens_over_plaintext_are_refused_unless_the_network_is_trusted(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("secret\n")
    env = {"LATENTWATCH_MODELS": "m", "LATENTWATCH_AUTH_TOKENS_FILE": str(tokens)}
    with pytest.raises(
        ConfigError, match=r"auth_tokens_file sends bearer tokens in plaintext on host '0\.0\.0\.0'"
    ) as info:
        ServiceConfig.load({}, env=env)
    for remedy in ("TLS", "loopback", "--trusted-network"):
        assert remedy in info.value.message

    # A network said to be trusted: allowed (serve warns at start).
    flags = parse("--trusted-network")
    flags.pop("config_file")
    trusted = ServiceConfig.load(flags, env=env)
    assert trusted.trusted_network
    assert trusted.plaintext_tokens
    # TLS, or a host only this machine reaches (a proxy beside the server ends TLS): allowed.
    for name in ("cert.pem", "key.pem"):
        (tmp_path / name).write_text("PEM")
    with_tls = {"tls_cert": tmp_path / "cert.pem", "tls_key": tmp_path / "key.pem"}
    assert not ServiceConfig.load(with_tls, env=env).plaintext_tokens
    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"):
        assert not ServiceConfig.load({"host": host}, env=env).plaintext_tokens
    # Without tokens, plaintext is none of this setting's business.
    assert not ServiceConfig.load({}, env={"LATENTWATCH_MODELS": "m"}).plaintext_tokens


def test_a_queue_smaller_than_a_request_is_allowed() -> None:
    # A request is admitted while fewer than max_queue_rows rows wait, whatever its size.
    config = ServiceConfig.load({"max_queue_rows": 10, "max_request_rows": 1000}, env={"LATENTWATCH_MODELS": "m"})
    assert config.max_queue_rows < config.max_request_rows
