"""The settings object: every variable documented in .env.example, every problem reported at once by
name, secrets never shown."""

from __future__ import annotations

import re

import pytest

from binance_cdc.settings import PROJECT_ROOT, VARIABLES, Secret, SettingsError, load_settings

EXAMPLE = (PROJECT_ROOT / ".env.example").read_text()


def example_names():
    return re.findall(r"^([A-Z][A-Z0-9_]*)=", EXAMPLE, flags=re.M)


def test_env_example_lists_every_variable_once():
    names = example_names()
    assert sorted(names) == sorted(v.env for v in VARIABLES)
    assert len(names) == len(set(names))


def test_env_example_holds_no_secret_value():
    for var in VARIABLES:
        if var.secret:
            assert re.search(rf"^{var.env}=$", EXAMPLE, flags=re.M), var.env


def test_defaults_load_when_secrets_are_given():
    env = {v.env: "s3cret" for v in VARIABLES if v.secret}
    settings = load_settings(env=env)
    assert settings.pg_port == 55432
    assert settings.binance_symbols[0] == "BTCUSDT"
    assert settings.secret("pg_app_password") == "s3cret"


def test_every_missing_and_invalid_variable_is_named_together():
    env = {"PG_PORT": "not-a-port", "BINANCE_WEIGHT_SHARE": "1.5"}
    with pytest.raises(SettingsError) as err:
        load_settings("postgres", "binance", "cassandra", env=env)
    message = str(err.value)
    for name in ("PG_PORT", "BINANCE_WEIGHT_SHARE", "PG_APP_PASSWORD", "CASSANDRA_APP_PASSWORD"):
        assert name in message
    assert "PG_REPLICATION_PASSWORD" not in message  # group not requested


def test_empty_secret_counts_as_missing():
    with pytest.raises(SettingsError, match="PG_APP_PASSWORD: missing"):
        load_settings("postgres", env={"PG_APP_PASSWORD": ""})


def test_secrets_are_masked_in_repr_and_str():
    settings = load_settings("postgres", env={"PG_APP_PASSWORD": "hunter2"})
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings.pg_app_password)
    assert isinstance(settings.pg_app_password, Secret)


def test_unloaded_group_is_a_clear_error():
    settings = load_settings("postgres", env={"PG_APP_PASSWORD": "x"})
    with pytest.raises(AttributeError, match="not loaded"):
        settings.cassandra_hosts
