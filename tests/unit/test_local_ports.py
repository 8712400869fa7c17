"""Every port the local stack listens on follows .env, so a second stack (the chaos suite's) can run beside
the first on one machine: no port of stack/ is fixed in code."""

from __future__ import annotations

from binance_cdc.settings import VARIABLES, load_settings
from stack import cassandra, kafka

SECRETS = {v.env: "x" for v in VARIABLES if v.secret}
MOVED = {**SECRETS, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:29092", "KAFKA_CONTROLLER_PORT": "29093",
         "CASSANDRA_PORT": "9142", "CASSANDRA_STORAGE_PORT": "7110", "CASSANDRA_SSL_STORAGE_PORT": "7111",
         "SIMULATOR_PORT": "9765"}


def test_defaults_are_the_documented_ports():
    ports = load_settings("local_ports", env={}).local_ports
    assert (ports.kafka_controller_port, ports.cassandra_storage_port, ports.cassandra_ssl_storage_port,
            ports.simulator_port) == (19093, 7010, 7011, 8765)


def test_kafka_listeners_follow_the_settings():
    props = kafka.server_properties(load_settings(env=MOVED))
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert props["controller.quorum.bootstrap.servers"] == "127.0.0.1:29093"


def test_cassandra_ports_follow_the_settings():
    values = cassandra.config_values(load_settings(env=MOVED))
    assert (values["native_port"], values["storage_port"], values["ssl_storage_port"]) == (9142, 7110, 7111)
