"""Apache Kafka broker in KRaft combined mode (broker + controller in one JVM), from the Maven jars.

Needs Java 17 and the jars in .local/lib/kafka (resolved by stack/maven/). The PLAINTEXT listener is the
host:port of KAFKA_BOOTSTRAP_SERVERS (default 127.0.0.1:19092), the controller listens on 127.0.0.1 at
KAFKA_CONTROLLER_PORT (default 19093).
server.properties is generated into .local/conf/kafka/ at each start; data lives in .local/data/kafka,
formatted once (its meta.properties keeps the cluster id, so topics survive `down`/`up`). The quorum is
the dynamic single-voter one Kafka 4.1 ships by default (`controller.quorum.bootstrap.servers` +
`StorageTool format --standalone`). Run it with `python -m stack up kafka`.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import subprocess
import uuid
from pathlib import Path

from stack import process
from stack.paths import CONF, DATA, JAVA, LIB, PROJECT

log = logging.getLogger(__name__)

NAME = "kafka"
REQUIRES: tuple[str, ...] = ()
CLASSPATH = str(LIB / "kafka" / "*")
CONF_DIR = CONF / "kafka"
DATA_DIR = DATA / "kafka"
LOG4J2_FILE = PROJECT / "stack" / "conf" / "kafka" / "log4j2.properties"
CONTROLLER_HOST = "127.0.0.1"
NODE_ID = 1
HEAP = ["-Xms512m", "-Xmx512m"]
# kafka-run-class.sh's GC flags, minus the ones only a big heap needs; the Connect worker uses them too.
JVM_FLAGS = ["-server", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
             "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
             # log4j2's own shutdown hook would close the logs before the service's shutdown lines.
             "-Dlog4j2.shutdownHookEnabled=false"]

# One node: every internal topic has one replica, and a consumer group starts without the 3 s wait for
# more members that only helps a real cluster.
BROKER_SETTINGS = {
    "process.roles": "broker,controller",
    "node.id": str(NODE_ID),
    "controller.listener.names": "CONTROLLER",
    "inter.broker.listener.name": "PLAINTEXT",
    "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
    "num.partitions": "1",
    "num.recovery.threads.per.data.dir": "1",
    "offsets.topic.replication.factor": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
    "auto.create.topics.enable": "true",
    "log.retention.hours": "168",
}


def listener_address(settings) -> tuple[str, int]:
    """The first KAFKA_BOOTSTRAP_SERVERS entry, which the local broker listens on."""
    first = settings.kafka.bootstrap_servers.split(",")[0].strip()
    host, sep, port = first.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise RuntimeError(f"kafka: KAFKA_BOOTSTRAP_SERVERS entry {first!r} is not host:port")
    return host, int(port)


def controller_address(settings) -> tuple[str, int]:
    return CONTROLLER_HOST, settings.local_ports.kafka_controller_port


def server_properties(settings) -> dict[str, str]:
    host, port = listener_address(settings)
    chost, cport = controller_address(settings)
    return {
        **BROKER_SETTINGS,
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{chost}:{cport}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "controller.quorum.bootstrap.servers": f"{chost}:{cport}",
        "log.dirs": str(DATA_DIR),
    }


def new_cluster_id() -> str:
    """Kafka's Uuid text form: 16 random bytes, base64url without padding (22 chars)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


def java_env() -> dict[str, str]:
    # KAFKA-15413: a COLUMNS variable inherited from a terminal breaks the tools' argument parser.
    return {k: v for k, v in os.environ.items() if k != "COLUMNS"}


def cluster_id() -> str | None:
    """The id this data directory was formatted with (None before the first start)."""
    meta = DATA_DIR / "meta.properties"
    if not meta.exists():
        return None
    for line in meta.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "cluster.id":
            return value.strip()
    return None


def missing() -> list[str]:
    gaps = [] if shutil.which(JAVA) else ["openjdk-17-jre-headless"]
    if not list((LIB / "kafka").glob("kafka_2.13-*.jar")):
        gaps.append(f"Kafka jars in {LIB / 'kafka'} (make setup)")
    return gaps


def write_config(settings) -> Path:
    return process.write_properties(CONF_DIR / "server.properties", server_properties(settings), __name__)


def format_storage(config: Path) -> None:
    """Format the data directory once; a formatted one keeps its cluster id and topics."""
    if cluster_id():
        return
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    cid = new_cluster_id()
    log.info("kafka: formatting %s with cluster id %s", DATA_DIR, cid)
    # --cluster-id=<id>: an id that starts with '-' would read as an option after a separate -t.
    argv = [JAVA, "-Xmx256m", "-cp", CLASSPATH, f"-Dlog4j2.configurationFile={LOG4J2_FILE}",
            "kafka.tools.StorageTool", "format", f"--cluster-id={cid}", "--standalone", "--config", str(config)]
    done = subprocess.run(argv, env=java_env(), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"kafka: storage format failed ({done.returncode}): {done.stdout}{done.stderr}")


def running() -> bool:
    return process.read_pid(NAME) is not None


def start(settings) -> None:
    if settings.kafka.security_protocol != "PLAINTEXT":
        raise RuntimeError("kafka: KAFKA_SECURITY_PROTOCOL is not PLAINTEXT, so KAFKA_BOOTSTRAP_SERVERS names a "
                           "remote cluster; the local broker serves PLAINTEXT only and is not started")
    if running():
        return
    host, port = listener_address(settings)
    for h, p in ((host, port), controller_address(settings)):
        if process.port_open(h, p):
            raise RuntimeError(f"kafka: {h}:{p} is already taken by a process this stack did not start")
    config = write_config(settings)
    format_storage(config)
    log.info("kafka: starting on %s:%s (controller %s:%s)", host, port, *controller_address(settings))
    # `env -u COLUMNS`: process.spawn passes this process's environment on (see java_env()).
    argv = ["env", "-u", "COLUMNS", JAVA, *HEAP, *JVM_FLAGS, f"-Dlog4j2.configurationFile={LOG4J2_FILE}",
            "-cp", CLASSPATH, "kafka.Kafka", str(config)]
    process.spawn(NAME, argv, cwd=PROJECT)


def admin_config(settings) -> dict[str, str]:
    from binance_cdc.kafka_client import client_conf

    return client_conf(settings.kafka)


def wait_ready(settings, timeout: float = 90) -> None:
    """Ready when the broker answers a metadata request, from the cluster this data directory belongs to."""
    from confluent_kafka.admin import AdminClient

    host, port = listener_address(settings)
    admin = None

    def answers() -> bool:
        nonlocal admin
        if not process.port_open(host, port):  # spares librdkafka's connection-refused log lines
            return False
        admin = admin or AdminClient({**admin_config(settings), "logger": log})
        metadata = admin.list_topics(timeout=5)
        expected = cluster_id()
        if expected and metadata.cluster_id != expected:
            raise RuntimeError(f"{host}:{port} answers for cluster {metadata.cluster_id}, not ours ({expected})")
        return bool(metadata.brokers)

    process.wait_until("kafka", answers, timeout, log_name=NAME)


def bootstrap(settings) -> None:
    """The five Debezium topics, created now rather than at each table's first change: the stream
    subscribes to all five and fails when one does not exist yet (a table no change has touched)."""
    from binance_cdc.kafka_client import topics

    ensure_topics(settings, topics(settings.kafka))


def ensure_topics(settings, names: list[str]) -> list[str]:
    """Create those of `names` that do not exist (1 partition, as Debezium's auto-creation gives them);
    the ones created."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({**admin_config(settings), "logger": log})
    existing = admin.list_topics(timeout=10).topics
    absent = [name for name in names if name not in existing]
    if not absent:
        return []
    futures = admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1) for name in absent],
                                  operation_timeout=30)
    for name, future in futures.items():
        try:
            future.result()
        except Exception as exc:  # noqa: BLE001 - created meanwhile by Debezium: fine
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    def served() -> bool:  # created is not yet served: every partition must have a leader
        meta = admin.list_topics(timeout=5).topics
        return all(name in meta and meta[name].error is None and meta[name].partitions
                   and all(p.leader >= 0 for p in meta[name].partitions.values()) for name in absent)

    process.wait_until("kafka topics", served, 30)
    log.info("kafka: created topics %s", ", ".join(absent))
    return absent


def stop() -> None:
    # SIGTERM runs the broker's controlled shutdown (flushes logs, closes the metadata log cleanly).
    process.stop(NAME, timeout=60)


def status(settings) -> dict:
    host, port = listener_address(settings)
    # wait_ready returns None once the broker answers for our cluster id and raises otherwise.
    return process.status_row(NAME, f"{host}:{port}", lambda: wait_ready(settings, timeout=8) is None)
