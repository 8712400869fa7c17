"""The settings: every variable documented in .env.example, every problem reported at once by name,
secrets never shown, typed groups that survive pickling (the Spark executors receive them so)."""

from __future__ import annotations

import pickle
import re
from dataclasses import FrozenInstanceError

import pytest

from binance_cdc.settings import (
    GROUP_TYPES, PROJECT_ROOT, VARIABLES, CassandraSettings, Credentials, Secret, SettingsError,
    check_declarations, load_settings,
)
from stack.envfile import ensure_env_file

EXAMPLE = (PROJECT_ROOT / ".env.example").read_text()
SECRETS = {v.env: f"s3cret-{v.env.lower()}" for v in VARIABLES if v.secret}


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


def test_every_group_type_matches_its_variables():
    assert check_declarations() == []


def test_defaults_load_into_typed_groups():
    settings = load_settings(env=SECRETS)
    assert settings.postgres.port == 55432
    assert settings.binance.symbols[0] == "BTCUSDT"
    assert isinstance(settings.cassandra, CassandraSettings)
    assert settings.postgres_app == Credentials("binance_app", Secret("s3cret-pg_app_password"))
    assert settings.bridge_login.password.reveal() == "s3cret-bridge_pg_password"


def test_every_missing_and_invalid_variable_is_named_together():
    env = {"PG_PORT": "not-a-port", "BINANCE_WEIGHT_SHARE": "1.5", "SERVING_SCHEMA": "drop table;"}
    with pytest.raises(SettingsError) as err:
        load_settings("postgres", "postgres_app", "binance", "cassandra_writer", "serving", env=env)
    message = str(err.value)
    for name in ("PG_PORT", "BINANCE_WEIGHT_SHARE", "PG_APP_PASSWORD", "CASSANDRA_APP_PASSWORD", "SERVING_SCHEMA"):
        assert name in message
    assert "PG_REPLICATION_PASSWORD" not in message  # group not requested


def test_empty_secret_counts_as_missing():
    with pytest.raises(SettingsError, match="PG_APP_PASSWORD: missing"):
        load_settings("postgres_app", env={"PG_APP_PASSWORD": ""})


def test_secrets_are_masked_in_repr_and_str():
    settings = load_settings(env=SECRETS)
    shown = repr(settings) + str(settings.postgres_app) + str(settings.kafka)
    for value in SECRETS.values():
        assert value not in shown
    assert isinstance(settings.postgres_app.password, Secret)


def test_groups_are_frozen_and_survive_pickling_with_their_secrets():
    settings = load_settings("cassandra", "cassandra_writer", env=SECRETS)
    with pytest.raises(FrozenInstanceError):
        settings.cassandra.port = 1  # type: ignore[misc]
    with pytest.raises(AttributeError):
        settings.extra = 1  # type: ignore[attr-defined]
    copy = pickle.loads(pickle.dumps((settings.cassandra, settings.cassandra_writer)))
    assert copy == (settings.cassandra, settings.cassandra_writer)
    assert copy[1].password.reveal() == "s3cret-cassandra_app_password"
    assert pickle.loads(pickle.dumps(settings)).cassandra == settings.cassandra


def test_unloaded_group_is_a_clear_error():
    settings = load_settings("postgres", env={})
    with pytest.raises(AttributeError, match="'cassandra' is not loaded"):
        settings.cassandra


def test_unknown_group_is_refused():
    with pytest.raises(ValueError, match="unknown settings groups"):
        load_settings("postgress", env={})


def test_env_file_is_created_with_random_passwords_and_completed_later(tmp_path):
    example = tmp_path / ".env.example"
    example.write_text("# a\nA_USER=x\n# pw of a\nA_PASSWORD=\nKAFKA_SASL_PASSWORD=\n")
    target = tmp_path / ".env"
    assert ensure_env_file(target, example) == ["A_USER", "A_PASSWORD", "KAFKA_SASL_PASSWORD"]
    first = dict(line.split("=", 1) for line in target.read_text().splitlines() if "=" in line)
    assert len(first["A_PASSWORD"]) >= 20 and first["KAFKA_SASL_PASSWORD"] == ""
    assert target.stat().st_mode & 0o077 == 0
    # A second call keeps what is there; a variable new in the example is appended with its own password.
    assert ensure_env_file(target, example) == []
    example.write_text(example.read_text() + "# pw of b\nB_PASSWORD=\n")
    assert ensure_env_file(target, example) == ["B_PASSWORD"]
    second = dict(line.split("=", 1) for line in target.read_text().splitlines() if "=" in line)
    assert second["A_PASSWORD"] == first["A_PASSWORD"]
    assert len(second["B_PASSWORD"]) >= 20 and second["B_PASSWORD"] != first["A_PASSWORD"]
    assert "# pw of b" in target.read_text()


def test_group_types_cover_every_group():
    assert set(GROUP_TYPES) == {v.group for v in VARIABLES}


def test_a_variable_by_its_environment_name():
    settings = load_settings(env=SECRETS)
    assert settings.value("PG_PORT") == 55432
    assert settings.value("PG_REPLICATION_PASSWORD").reveal() == "s3cret-pg_replication_password"
    with pytest.raises(KeyError, match="NOPE"):
        settings.value("NOPE")
