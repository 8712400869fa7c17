"""The local Kafka Connect worker (stack/connect.py): it runs against our broker, loads the Debezium
PostgreSQL plugin at the pinned version, and resolves `${env:PG_REPLICATION_PASSWORD}` in connector configs
(checked by letting Debezium log in to the real Postgres during config validation). Needs `make up`."""

from __future__ import annotations

import pytest
import requests

import stack.connect
import stack.kafka
from stack.paths import versions

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def connect_url(settings):
    stack.kafka.wait_ready(settings, timeout=60)
    stack.connect.wait_ready(settings, timeout=90)
    return settings.connect.url


def validate_postgres_config(connect_url, settings, password: str) -> dict[str, list[str]]:
    """Errors per config key as Debezium's own validation reports them (it opens a real connection)."""
    config = {
        "connector.class": stack.connect.POSTGRES_CONNECTOR,
        "name": "it-stack-connect-validate",
        "topic.prefix": "it_stack_connect",
        "plugin.name": "pgoutput",
        "database.hostname": settings.postgres.host,
        "database.port": str(settings.postgres.port),
        "database.dbname": settings.postgres.database,
        "database.user": settings.replication.user,
        "database.password": password,
    }
    response = requests.put(f"{connect_url}/connector-plugins/PostgresConnector/config/validate",
                            json=config, timeout=60)
    response.raise_for_status()
    return {c["value"]["name"]: c["value"]["errors"] for c in response.json()["configs"] if c["value"]["errors"]}


def test_worker_runs_on_our_kafka_cluster(connect_url):
    info = requests.get(f"{connect_url}/", timeout=10).json()
    assert info["version"] == versions()["KAFKA_VERSION"]
    assert info["kafka_cluster_id"] == stack.kafka.cluster_id()


def test_debezium_postgres_plugin_is_listed_at_pinned_version(connect_url):
    plugins = requests.get(f"{connect_url}/connector-plugins", timeout=10).json()
    postgres = [p for p in plugins if p["class"] == "io.debezium.connector.postgresql.PostgresConnector"]
    assert postgres == [{"class": "io.debezium.connector.postgresql.PostgresConnector", "type": "source",
                         "version": versions()["DEBEZIUM_VERSION"]}]


def test_env_provider_supplies_the_replication_password(connect_url, settings):
    assert validate_postgres_config(connect_url, settings, "${env:PG_REPLICATION_PASSWORD}") == {}


def test_env_provider_refuses_variables_outside_its_allowlist(connect_url, settings):
    errors = validate_postgres_config(connect_url, settings, "${env:PG_APP_PASSWORD}")
    assert "password authentication failed" in " ".join(errors.get("database.hostname", []))
