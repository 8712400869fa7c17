"""Kafka Connect distributed worker with the Debezium PostgreSQL connector as an isolated plugin.

Needs Java 17, the Kafka broker (REQUIRES) and the jars resolved by stack/maven/: the worker's own classpath
is .local/lib/connect only, Debezium stays in plugin.path (.local/lib/connect-plugins) so Connect loads it
in its own class loader. The REST API listens on CONNECT_URL (default http://127.0.0.1:8083). Worker
configs, offsets and statuses live in Kafka topics (replication factor 1). Connector configs can say
`${env:PG_REPLICATION_PASSWORD}`: the env config provider resolves it from the worker's environment,
which gets that one secret from the settings, so the password never sits in a stored connector config.
Run it with `python -m stack up connect`; bootstrap registers the connectors (connectors.register).
"""

from __future__ import annotations

import importlib
import logging
import shutil
from pathlib import Path
from urllib.parse import urlsplit

from stack import process
from stack.kafka import JVM_FLAGS
from stack.paths import CONF, JAVA, LIB, PROJECT

log = logging.getLogger(__name__)

NAME = "connect"
REQUIRES = ("kafka",)
CLASSPATH = str(LIB / "connect" / "*")
PLUGIN_PATH = LIB / "connect-plugins"
CONF_DIR = CONF / "connect"
LOG4J2_FILE = PROJECT / "stack" / "conf" / "kafka" / "connect-log4j2.properties"
POSTGRES_CONNECTOR = "io.debezium.connector.postgresql.PostgresConnector"
# The one variable the env config provider may hand to connector configs.
PROVIDED_ENV = ("PG_REPLICATION_PASSWORD",)
HEAP = ["-Xms512m", "-Xmx768m"]

WORKER_SETTINGS = {
    "group.id": "binance-connect",
    "config.storage.topic": "connect-configs",
    "offset.storage.topic": "connect-offsets",
    "status.storage.topic": "connect-status",
    "config.storage.replication.factor": "1",
    "offset.storage.replication.factor": "1",
    "status.storage.replication.factor": "1",
    "key.converter": "org.apache.kafka.connect.json.JsonConverter",
    "value.converter": "org.apache.kafka.connect.json.JsonConverter",
    "key.converter.schemas.enable": "true",
    "value.converter.schemas.enable": "true",
    # Debezium confirms an LSN to Postgres only when Connect commits offsets: every 10 s, not the 60 s
    # default, so the slot holds back less WAL.
    "offset.flush.interval.ms": "10000",
    # Debezium's jar declares its plugins in META-INF/services, so no classpath-wide reflection scan.
    "plugin.discovery": "service_load",
    "config.providers": "env",
    "config.providers.env.class": "org.apache.kafka.common.config.provider.EnvVarConfigProvider",
    "config.providers.env.param.allowlist.pattern": "^(" + "|".join(PROVIDED_ENV) + ")$",
}


def rest_address(settings) -> tuple[str, int]:
    parts = urlsplit(settings.connect.url)
    if parts.scheme != "http" or not parts.hostname or not parts.port:
        raise RuntimeError(f"connect: CONNECT_URL {settings.connect.url!r} must be http://host:port for the local "
                           "worker")
    return parts.hostname, parts.port


def worker_properties(settings) -> dict[str, str]:
    host, port = rest_address(settings)
    return {
        "bootstrap.servers": settings.kafka.bootstrap_servers,
        **WORKER_SETTINGS,
        "listeners": f"http://{host}:{port}",
        "rest.advertised.host.name": host,
        "rest.advertised.port": str(port),
        "plugin.path": str(PLUGIN_PATH),
    }


def missing() -> list[str]:
    gaps = [] if shutil.which(JAVA) else ["openjdk-17-jre-headless"]
    if not list((LIB / "connect").glob("connect-runtime-*.jar")):
        gaps.append(f"Kafka Connect jars in {LIB / 'connect'} (make setup)")
    if not list(PLUGIN_PATH.glob("debezium-connector-postgres/debezium-connector-postgres-*.jar")):
        gaps.append(f"Debezium PostgreSQL plugin in {PLUGIN_PATH} (make setup)")
    return gaps


def write_config(settings) -> Path:
    return process.write_properties(CONF_DIR / "connect-distributed.properties", worker_properties(settings), __name__)


def running() -> bool:
    return process.read_pid(NAME) is not None


def start(settings) -> None:
    if running():
        return
    host, port = rest_address(settings)
    if process.port_open(host, port):
        raise RuntimeError(f"connect: {host}:{port} is already taken by a process this stack did not start")
    config = write_config(settings)
    log.info("connect: starting REST on %s:%s, plugins from %s", host, port, PLUGIN_PATH)
    argv = ["env", "-u", "COLUMNS", JAVA, *HEAP, *JVM_FLAGS, f"-Dlog4j2.configurationFile={LOG4J2_FILE}",
            "-cp", CLASSPATH, "org.apache.kafka.connect.cli.ConnectDistributed", str(config)]
    provided = {name: settings.value(name).reveal() for name in PROVIDED_ENV}
    process.spawn(NAME, argv, env=provided, cwd=PROJECT)


def connector_plugins(settings, timeout: float = 5) -> list[dict]:
    import requests

    response = requests.get(f"{settings.connect.url}/connector-plugins", timeout=timeout)
    response.raise_for_status()
    return response.json()


def worker_health(settings, timeout: float = 5) -> dict:
    """GET /health (KIP-1017): 200 once the worker has joined its group and read the config topic."""
    import requests

    response = requests.get(f"{settings.connect.url}/health", timeout=timeout)
    body = response.json()
    return {**body, "http_status": response.status_code}


def wait_ready(settings, timeout: float = 120) -> None:
    """Ready when the worker reports itself healthy (so connectors can be registered) and its REST API
    lists the Debezium PostgreSQL connector."""
    host, port = rest_address(settings)

    def answers() -> bool:
        if not process.port_open(host, port):
            return False
        health = worker_health(settings)
        if health["http_status"] != 200 or health.get("status") != "healthy":
            return False
        classes = {plugin["class"] for plugin in connector_plugins(settings)}
        if POSTGRES_CONNECTOR not in classes:
            raise RuntimeError(f"worker answers but lacks {POSTGRES_CONNECTOR}; plugins: {sorted(classes)}")
        return True

    process.wait_until("connect", answers, timeout, log_name=NAME)


def bootstrap(settings) -> None:
    """Register the project's connectors, when connectors.register (written separately) exists."""
    try:
        register = importlib.import_module("connectors.register")
    except ModuleNotFoundError as exc:
        if exc.name not in ("connectors", "connectors.register"):
            raise  # the module exists but one of its own imports is missing: say so
        log.info("connect: no connectors.register module yet, no connector registered")
        return
    register.register_local(settings)


def stop() -> None:
    # SIGTERM: the worker stops its tasks, commits their offsets and leaves the group.
    process.stop(NAME, timeout=60)


def status(settings) -> dict:
    # wait_ready returns None once the REST API answers and raises otherwise.
    return process.status_row(NAME, settings.connect.url, lambda: wait_ready(settings, timeout=8) is None)
