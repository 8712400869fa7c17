"""The TLS settings reach the real clients: pointed at the local stack's plaintext listeners, each client
configured for TLS refuses to talk rather than falling back to plaintext (where a password would cross
the wire in clear). The settings come from the environment as the scripts read it; only the TLS variables
differ from .env.
"""

from __future__ import annotations

import os

import psycopg2
import pytest
from cassandra.cluster import NoHostAvailable

from binance_cdc import postgres_conn
from binance_cdc.cassandra_conn import connect
from binance_cdc.kafka_client import client_conf
from binance_cdc.settings import load_settings


def settings_with(*groups: str, **env: str):
    return load_settings(*groups, env={**os.environ, **env})


@pytest.mark.parametrize("mode", ["require", "verify-full"])
def test_postgres_sslmode_reaches_libpq(settings, mode):
    remote = settings_with("postgres", "postgres_reader", PG_SSLMODE=mode)
    with pytest.raises(psycopg2.OperationalError, match="server does not support SSL, but SSL was required"):
        postgres_conn.connect(remote.postgres, remote.postgres_reader, "test_security_tls").close()
    plain = settings_with("postgres", "postgres_reader", PG_SSLMODE="disable")  # the same server answers without
    postgres_conn.connect(plain.postgres, plain.postgres_reader, "test_security_tls").close()


def test_serving_sslmode_reaches_libpq(settings):
    remote = settings_with("serving", "grafana_login", SERVING_PG_SSLMODE="require")
    with pytest.raises(psycopg2.OperationalError, match="SSL was required"):
        postgres_conn.connect(remote.serving, remote.grafana_login, "test_security_tls").close()


def test_cassandra_ssl_reaches_the_driver(settings):
    remote = settings_with("cassandra", "cassandra_reader", CASSANDRA_SSL="true")
    with pytest.raises(NoHostAvailable) as info:
        connect(remote.cassandra, remote.cassandra_reader, timeout=10).cluster.shutdown()
    assert "SSL" in str(info.value), info.value.errors


def test_kafka_sasl_ssl_reaches_librdkafka(settings):
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    remote = settings_with("kafka", KAFKA_SECURITY_PROTOCOL="SASL_SSL", KAFKA_SASL_USERNAME="key",
                           KAFKA_SASL_PASSWORD="secret-never-sent")
    admin = AdminClient({**client_conf(remote.kafka), "log_level": 0})  # the handshake errors are expected
    with pytest.raises(KafkaException, match="transport failure|timed out"):
        admin.list_topics(timeout=5)
