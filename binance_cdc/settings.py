"""Typed settings, built once from the environment (and `.env`, through python-dotenv).

Each script asks for the groups it needs (`load_settings("postgres", "postgres_app", "binance")`) and
gets a `Settings` whose group properties are frozen, picklable dataclasses (`settings.postgres.host`,
`settings.binance.symbols`). Every missing or invalid variable of the requested groups is reported
together, by name, in one `SettingsError`; asking for a group that was not loaded is an error naming it.
Rules between variables of one group are checked too (GROUP_CHECKS: SASL_SSL needs the API key and secret;
a Cassandra CA or client certificate needs CASSANDRA_SSL=true), and a file setting must name a readable file.
Secrets are `Secret` strings: masked in repr, str and logs; `.reveal()` hands the value to a client.
`.env.example` lists every variable declared here (tests/unit/test_settings.py checks it).

Where and as whom are separate groups: `postgres` says where the source database is, `postgres_app`,
`replication`, `postgres_reader`, `bridge_login` and `grafana_login` are the roles; `cassandra` says where the cluster is,
`cassandra_writer`, `cassandra_reader` and `cassandra_admin` are its roles. So a script only ever needs
the passwords of the roles it uses.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Mapping

from binance_cdc.datasets import DEFAULT_SYMBOLS

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LIBPQ_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


class SettingsError(ValueError):
    """Raised with every problem found, one per line, each naming its variable."""


class Secret:
    """A string that never shows itself: repr/str are masked, `reveal()` returns it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self):
        # Shipped to Spark executors inside the sink's settings; pickling keeps the value, not a mask.
        return (Secret, (self._value,))


# --- the groups -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    user: str
    password: Secret


@dataclass(frozen=True)
class PostgresSettings:
    """Where the source database (schema `binance`) is."""

    host: str
    port: int
    database: str
    sslmode: str
    sslrootcert: str  # "" leaves libpq's default (~/.postgresql/root.crt)


@dataclass(frozen=True)
class ServingSettings:
    """Where the bridge writes the serving schema that Grafana reads (may be another server)."""

    host: str
    port: int
    database: str
    sslmode: str
    sslrootcert: str
    schema: str


@dataclass(frozen=True)
class BridgeSettings:
    interval_s: float
    page_size: int


@dataclass(frozen=True)
class BinanceSettings:
    base_url: str
    symbols: tuple[str, ...]
    weight_share: float
    timeout_s: float
    max_workers: int
    max_retries: int


@dataclass(frozen=True)
class KafkaSettings:
    """Holds the SASL secret when set: build client configs from it, never log them."""

    bootstrap_servers: str
    security_protocol: str
    sasl_username: str
    sasl_password: Secret
    ssl_ca_file: str  # "" trusts the system's (librdkafka) or the JVM's (Spark) CA store
    topic_prefix: str


@dataclass(frozen=True)
class ConnectSettings:
    url: str
    slot_name: str
    publication: str


@dataclass(frozen=True)
class CassandraSettings:
    """Where the cluster is and which keyspace the pipeline uses."""

    hosts: tuple[str, ...]
    port: int
    local_dc: str
    keyspace: str
    replication: str
    ssl: bool
    ssl_ca_file: str  # "" trusts the system's CA store
    ssl_cert_file: str  # client certificate and key, both or neither (clusters that require them)
    ssl_key_file: str
    ssl_verify_hostname: bool


@dataclass(frozen=True)
class LocalPortsSettings:
    """Ports only the local stack (stack/) listens on besides the client ones: change them together with
    PG_PORT, KAFKA_BOOTSTRAP_SERVERS, CONNECT_URL and CASSANDRA_PORT to run a second stack on one machine."""

    kafka_controller_port: int
    cassandra_storage_port: int
    cassandra_ssl_storage_port: int
    simulator_port: int


@dataclass(frozen=True)
class SparkSettings:
    checkpoint_dir: str
    trigger_seconds: float
    max_offsets_per_trigger: int
    starting_offsets: str
    outage_limit_s: float
    driver_max_rows: int


# --- parsers ----------------------------------------------------------------------------------------


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must be 0 or a positive integer")
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0:
        raise ValueError("must be a positive number")
    return value


def _share(raw: str) -> float:
    value = float(raw)
    if not 0 < value <= 1:
        raise ValueError("must be a fraction in (0, 1]")
    return value


def _csv(raw: str) -> tuple[str, ...]:
    items = tuple(part.strip() for part in raw.split(",") if part.strip())
    if not items:
        raise ValueError("must list at least one value")
    return items


def _url(raw: str) -> str:
    if not raw.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return raw.rstrip("/")


def _identifier(raw: str) -> str:
    if not raw or not (raw[0].isalpha() or raw[0] == "_") or not all(c.isalnum() or c == "_" for c in raw):
        raise ValueError("must be a plain SQL identifier (letters, digits, _)")
    return raw


def _slot_name(raw: str) -> str:
    # Postgres's own rule for slot names; it also lets the name sit safely inside the connector's
    # heartbeat.action.query literal.
    if not raw or len(raw) > 63 or not all(c.islower() or c.isdigit() or c == "_" for c in raw) or not raw.isascii():
        raise ValueError("must be a replication slot name: lower-case letters, digits and _, at most 63")
    return raw


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("true", "yes", "1", "on"):
        return True
    if value in ("false", "no", "0", "off"):
        return False
    raise ValueError("must be true or false")


def _optional_file(raw: str) -> str:
    """A path that must name a readable file, or "" for none (checked on the machine that loads it)."""
    if raw and not (os.path.isfile(raw) and os.access(raw, os.R_OK)):
        raise ValueError(f"no readable file at {raw}")
    return raw


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return raw

    return parse


@dataclass(frozen=True)
class Var:
    env: str
    group: str
    field: str  # attribute of the group's dataclass
    parse: Callable[[str], Any] = str
    default: str | None = None  # None: required
    secret: bool = False
    doc: str = ""


GROUP_TYPES: dict[str, type] = {
    "postgres": PostgresSettings,
    "postgres_app": Credentials,
    "replication": Credentials,
    "postgres_reader": Credentials,
    "binance": BinanceSettings,
    "kafka": KafkaSettings,
    "connect": ConnectSettings,
    "cassandra": CassandraSettings,
    "cassandra_writer": Credentials,
    "cassandra_reader": Credentials,
    "cassandra_admin": Credentials,
    "spark": SparkSettings,
    "local_ports": LocalPortsSettings,
    "serving": ServingSettings,
    "bridge": BridgeSettings,
    "bridge_login": Credentials,
    "grafana_login": Credentials,
}

VARIABLES: tuple[Var, ...] = (
    # Postgres: the application role loads `binance`; the replication role is Debezium's.
    Var("PG_HOST", "postgres", "host", default="127.0.0.1", doc="Postgres host"),
    Var("PG_PORT", "postgres", "port", _positive_int, "55432", doc="Postgres port"),
    Var("PG_DATABASE", "postgres", "database", default="binance", doc="database holding schema binance"),
    Var("PG_SSLMODE", "postgres", "sslmode", _choice(*LIBPQ_SSLMODES), "prefer",
        doc="libpq sslmode: prefer locally, verify-full (or at least require) for a remote database"),
    Var("PG_SSLROOTCERT", "postgres", "sslrootcert", _optional_file, "",
        doc="CA file that verify-ca / verify-full check the server against (empty: libpq's ~/.postgresql/root.crt)"),
    Var("PG_APP_USER", "postgres_app", "user", default="binance_app", doc="role the extractor writes with"),
    Var("PG_APP_PASSWORD", "postgres_app", "password", secret=True, doc="password of PG_APP_USER"),
    Var("PG_REPLICATION_USER", "replication", "user", default="binance_cdc", doc="role Debezium connects with"),
    Var("PG_REPLICATION_PASSWORD", "replication", "password", secret=True, doc="password of PG_REPLICATION_USER"),
    Var("PG_READER_USER", "postgres_reader", "user", default="binance_readonly",
        doc="read-only role of `make psql` (SELECT on schemas binance and serving)"),
    Var("PG_READER_PASSWORD", "postgres_reader", "password", secret=True, doc="password of PG_READER_USER"),
    # Binance
    Var("BINANCE_BASE_URL", "binance", "base_url", _url, "https://api.binance.com",
        doc="API base URL; https://data-api.binance.vision serves market data where api.binance.com answers 451"),
    Var("BINANCE_SYMBOLS", "binance", "symbols", _csv,
        ",".join(DEFAULT_SYMBOLS),
        doc="comma-separated symbols"),
    Var("BINANCE_WEIGHT_SHARE", "binance", "weight_share", _share, "0.5",
        doc="share of the 6000/min request-weight budget one run may use"),
    Var("BINANCE_TIMEOUT_S", "binance", "timeout_s", _positive_float, "10", doc="per-request timeout in seconds"),
    Var("BINANCE_MAX_WORKERS", "binance", "max_workers", _positive_int, "8", doc="concurrent requests"),
    Var("BINANCE_MAX_RETRIES", "binance", "max_retries", _positive_int, "4", doc="retries on 429/5xx/timeouts"),
    # Kafka (local broker or Confluent Cloud)
    Var("KAFKA_BOOTSTRAP_SERVERS", "kafka", "bootstrap_servers", default="127.0.0.1:19092",
        doc="Kafka bootstrap servers"),
    Var("KAFKA_SECURITY_PROTOCOL", "kafka", "security_protocol", _choice("PLAINTEXT", "SASL_SSL"), "PLAINTEXT",
        doc="PLAINTEXT locally, SASL_SSL for Confluent Cloud"),
    Var("KAFKA_SASL_USERNAME", "kafka", "sasl_username", default="", doc="Confluent Cloud API key (SASL_SSL only)"),
    Var("KAFKA_SASL_PASSWORD", "kafka", "sasl_password", default="", secret=True, doc="Confluent Cloud API secret"),
    Var("KAFKA_SSL_CA_FILE", "kafka", "ssl_ca_file", _optional_file, "",
        doc="PEM CA bundle for SASL_SSL (empty: the system's and the JVM's trusted CAs, enough for Confluent Cloud)"),
    Var("TOPIC_PREFIX", "kafka", "topic_prefix", default="binance",
        doc="Debezium topic.prefix: topics are <prefix>.binance.<table>"),
    # Kafka Connect + Debezium
    Var("CONNECT_URL", "connect", "url", _url, "http://127.0.0.1:8083", doc="Kafka Connect REST API"),
    Var("DEBEZIUM_SLOT_NAME", "connect", "slot_name", _slot_name, "binance_slot", doc="logical replication slot"),
    Var("DEBEZIUM_PUBLICATION", "connect", "publication", default="binance_publication",
        doc="publication of the five tables"),
    # Cassandra
    Var("CASSANDRA_HOSTS", "cassandra", "hosts", _csv, "127.0.0.1", doc="comma-separated contact points"),
    Var("CASSANDRA_PORT", "cassandra", "port", _positive_int, "9042", doc="CQL native port"),
    Var("CASSANDRA_LOCAL_DC", "cassandra", "local_dc", default="datacenter1", doc="local data centre for the driver"),
    Var("CASSANDRA_KEYSPACE", "cassandra", "keyspace", _identifier, "binance_test", doc="keyspace the stream writes"),
    Var("CASSANDRA_REPLICATION", "cassandra", "replication",
        default="{'class': 'SimpleStrategy', 'replication_factor': 1}",
        doc="keyspace replication map (NetworkTopologyStrategy for clusters)"),
    Var("CASSANDRA_SSL", "cassandra", "ssl", _bool, "false", doc="TLS to the cluster (true for a remote cluster)"),
    Var("CASSANDRA_SSL_CA_FILE", "cassandra", "ssl_ca_file", _optional_file, "",
        doc="PEM CA bundle the nodes' certificates are checked against (empty: the system's trusted CAs)"),
    Var("CASSANDRA_SSL_CERT_FILE", "cassandra", "ssl_cert_file", _optional_file, "",
        doc="client certificate (PEM) for clusters that require one; with CASSANDRA_SSL_KEY_FILE"),
    Var("CASSANDRA_SSL_KEY_FILE", "cassandra", "ssl_key_file", _optional_file, "",
        doc="its private key (PEM)"),
    Var("CASSANDRA_SSL_VERIFY_HOSTNAME", "cassandra", "ssl_verify_hostname", _bool, "true",
        doc="check that a node's certificate names the address the driver connects to"),
    Var("CASSANDRA_APP_USER", "cassandra_writer", "user", default="binance_writer",
        doc="role the stream writes with (SELECT and MODIFY on the keyspace only)"),
    Var("CASSANDRA_APP_PASSWORD", "cassandra_writer", "password", secret=True, doc="password of CASSANDRA_APP_USER"),
    Var("CASSANDRA_READER_USER", "cassandra_reader", "user", default="binance_reader",
        doc="read-only role the bridge and `make cqlsh` use (SELECT on the keyspace only)"),
    Var("CASSANDRA_READER_PASSWORD", "cassandra_reader", "password", secret=True,
        doc="password of CASSANDRA_READER_USER"),
    Var("CASSANDRA_ADMIN_USER", "cassandra_admin", "user", default="binance_admin",
        doc="superuser that replaces the default cassandra/cassandra (setup only)"),
    Var("CASSANDRA_ADMIN_PASSWORD", "cassandra_admin", "password", secret=True,
        doc="password of CASSANDRA_ADMIN_USER"),
    # Spark
    Var("SPARK_CHECKPOINT_DIR", "spark", "checkpoint_dir", default=".local/checkpoints/binance",
        doc="durable checkpoint directory (HDFS/S3 path on a cluster)"),
    Var("SPARK_TRIGGER_SECONDS", "spark", "trigger_seconds", _positive_float, "1", doc="micro-batch trigger interval"),
    Var("SPARK_MAX_OFFSETS_PER_TRIGGER", "spark", "max_offsets_per_trigger", _positive_int, "100000",
        doc="cap on events per micro-batch"),
    Var("SPARK_STARTING_OFFSETS", "spark", "starting_offsets", _choice("earliest", "latest"), "earliest",
        doc="where a new query starts (a restart resumes from its checkpoint)"),
    Var("STREAM_OUTAGE_LIMIT_S", "spark", "outage_limit_s", _positive_float, "120",
        doc="how long the stream retries an unreachable Cassandra before it exits 1 (rides out a restart)"),
    Var("STREAM_DRIVER_MAX_ROWS", "spark", "driver_max_rows", _non_negative_int, "2000",
        doc="micro-batches of at most this many events are written by the driver (0: always the executors)"),
    # Serving side: the bridge copies Cassandra into a Postgres schema that Grafana reads.
    Var("SERVING_PG_HOST", "serving", "host", default="127.0.0.1",
        doc="Postgres host of the serving schema (may differ from PG_HOST)"),
    Var("SERVING_PG_PORT", "serving", "port", _positive_int, "55432", doc="its port"),
    Var("SERVING_PG_DATABASE", "serving", "database", default="binance", doc="its database"),
    Var("SERVING_PG_SSLMODE", "serving", "sslmode", _choice("disable", "require", "verify-ca", "verify-full"),
        "disable", doc="its sslmode: disable on loopback, require or verify-full for a remote server "
                       "(Grafana accepts only these four)"),
    Var("SERVING_PG_SSLROOTCERT", "serving", "sslrootcert", _optional_file, "",
        doc="CA file for verify-ca / verify-full (empty: libpq's ~/.postgresql/root.crt)"),
    Var("SERVING_SCHEMA", "serving", "schema", _identifier, "serving",
        doc="schema holding the tables the dashboards read"),
    Var("BRIDGE_PG_USER", "bridge_login", "user", default="binance_bridge",
        doc="role the bridge writes the serving schema with (nothing else)"),
    Var("BRIDGE_PG_PASSWORD", "bridge_login", "password", secret=True, doc="password of BRIDGE_PG_USER"),
    Var("BRIDGE_INTERVAL_S", "bridge", "interval_s", _positive_float, "10",
        doc="pause between runs of pg_cassandra_bridge.py --follow"),
    Var("BRIDGE_PAGE_SIZE", "bridge", "page_size", _positive_int, "5000",
        doc="rows per Cassandra page and per COPY chunk"),
    Var("GRAFANA_PG_USER", "grafana_login", "user", default="binance_grafana",
        doc="role Grafana reads the serving schema with (SELECT only)"),
    Var("GRAFANA_PG_PASSWORD", "grafana_login", "password", secret=True, doc="password of GRAFANA_PG_USER"),
    # The local stack's other listeners (all on 127.0.0.1), so two stacks can share a machine.
    Var("KAFKA_CONTROLLER_PORT", "local_ports", "kafka_controller_port", _positive_int, "19093",
        doc="local Kafka's KRaft controller listener"),
    Var("CASSANDRA_STORAGE_PORT", "local_ports", "cassandra_storage_port", _positive_int, "7010",
        doc="local Cassandra's inter-node storage port"),
    Var("CASSANDRA_SSL_STORAGE_PORT", "local_ports", "cassandra_ssl_storage_port", _positive_int, "7011",
        doc="local Cassandra's inter-node TLS storage port"),
    Var("SIMULATOR_PORT", "local_ports", "simulator_port", _positive_int, "8765",
        doc="the Binance simulator `make demo` starts when the real API does not answer"),
)

GROUPS = tuple(GROUP_TYPES)


def _kafka_checks(v: Mapping[str, Any]) -> list[str]:
    if v["security_protocol"] == "SASL_SSL":
        return [f"{name}: missing (KAFKA_SECURITY_PROTOCOL=SASL_SSL needs the cluster API key and secret)"
                for name, value in (("KAFKA_SASL_USERNAME", v["sasl_username"]),
                                    ("KAFKA_SASL_PASSWORD", v["sasl_password"])) if not value]
    if v["ssl_ca_file"]:
        return ["KAFKA_SSL_CA_FILE: set, but KAFKA_SECURITY_PROTOCOL is PLAINTEXT (no TLS to use it for)"]
    return []


def _cassandra_checks(v: Mapping[str, Any]) -> list[str]:
    problems = []
    files = [name for name, field in (("CASSANDRA_SSL_CA_FILE", "ssl_ca_file"),
                                      ("CASSANDRA_SSL_CERT_FILE", "ssl_cert_file"),
                                      ("CASSANDRA_SSL_KEY_FILE", "ssl_key_file")) if v[field]]
    if files and not v["ssl"]:
        # A CA file without TLS would look secure and send the password in clear text.
        problems += [f"{name}: set, but CASSANDRA_SSL is false" for name in files]
    if bool(v["ssl_cert_file"]) != bool(v["ssl_key_file"]):
        missing = "CASSANDRA_SSL_KEY_FILE" if v["ssl_cert_file"] else "CASSANDRA_SSL_CERT_FILE"
        problems.append(f"{missing}: missing (a client certificate needs both CASSANDRA_SSL_CERT_FILE and "
                        "CASSANDRA_SSL_KEY_FILE)")
    return problems


# Rules between variables of one group, run once each of its variables parsed; each problem names one.
GROUP_CHECKS: dict[str, Callable[[Mapping[str, Any]], list[str]]] = {
    "kafka": _kafka_checks,
    "cassandra": _cassandra_checks,
}


class Settings:
    """The loaded groups, each a frozen dataclass; an unloaded group is an AttributeError naming it."""

    __slots__ = ("_groups",)

    def __init__(self, groups: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_groups", dict(groups))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Settings are read-only")

    def group(self, name: str) -> Any:
        try:
            return self._groups[name]
        except KeyError:
            raise AttributeError(
                f"settings group {name!r} is not loaded (loaded: {', '.join(self._groups) or 'none'})") from None

    @property
    def loaded(self) -> tuple[str, ...]:
        return tuple(self._groups)

    def __repr__(self) -> str:
        return f"Settings({', '.join(f'{k}={v!r}' for k, v in self._groups.items())})"

    def __reduce__(self):
        return (Settings, (self._groups,))

    def value(self, env: str) -> Any:
        """The parsed value of one variable by its environment name (a Secret stays a Secret)."""
        var = next((v for v in VARIABLES if v.env == env), None)
        if var is None:
            raise KeyError(f"no variable {env} is declared")
        return getattr(self.group(var.group), var.field)

    postgres: PostgresSettings = property(lambda self: self.group("postgres"))  # type: ignore[assignment]
    postgres_app: Credentials = property(lambda self: self.group("postgres_app"))  # type: ignore[assignment]
    replication: Credentials = property(lambda self: self.group("replication"))  # type: ignore[assignment]
    postgres_reader: Credentials = property(lambda self: self.group("postgres_reader"))  # type: ignore[assignment]
    binance: BinanceSettings = property(lambda self: self.group("binance"))  # type: ignore[assignment]
    kafka: KafkaSettings = property(lambda self: self.group("kafka"))  # type: ignore[assignment]
    connect: ConnectSettings = property(lambda self: self.group("connect"))  # type: ignore[assignment]
    cassandra: CassandraSettings = property(lambda self: self.group("cassandra"))  # type: ignore[assignment]
    cassandra_writer: Credentials = property(lambda self: self.group("cassandra_writer"))  # type: ignore[assignment]
    cassandra_reader: Credentials = property(lambda self: self.group("cassandra_reader"))  # type: ignore[assignment]
    cassandra_admin: Credentials = property(lambda self: self.group("cassandra_admin"))  # type: ignore[assignment]
    spark: SparkSettings = property(lambda self: self.group("spark"))  # type: ignore[assignment]
    local_ports: LocalPortsSettings = property(lambda self: self.group("local_ports"))  # type: ignore[assignment]
    serving: ServingSettings = property(lambda self: self.group("serving"))  # type: ignore[assignment]
    bridge: BridgeSettings = property(lambda self: self.group("bridge"))  # type: ignore[assignment]
    bridge_login: Credentials = property(lambda self: self.group("bridge_login"))  # type: ignore[assignment]
    grafana_login: Credentials = property(lambda self: self.group("grafana_login"))  # type: ignore[assignment]


def load_dotenv_file(path: Path | None = None) -> None:
    """Load `.env` (never overriding the real environment). Called by each script's main()."""
    from dotenv import load_dotenv

    load_dotenv(path or PROJECT_ROOT / ".env", override=False)


def load_settings(*groups: str, env: Mapping[str, str] | None = None) -> Settings:
    """The requested groups (all when none is named); raises SettingsError listing every problem."""
    env = os.environ if env is None else env
    unknown = [g for g in groups if g not in GROUP_TYPES]
    if unknown:
        raise ValueError(f"unknown settings groups {unknown}; known: {', '.join(GROUPS)}")
    wanted = groups or GROUPS
    values: dict[str, dict[str, Any]] = {g: {} for g in wanted}
    problems: list[str] = []
    for var in VARIABLES:
        if var.group not in values:
            continue
        raw = env.get(var.env)
        if raw is None or (raw == "" and var.default is None):
            if var.default is None:
                problems.append(f"{var.env}: missing ({var.doc})")
                continue
            raw = var.default
        try:
            value = var.parse(raw)
        except ValueError as exc:
            problems.append(f"{var.env}: invalid value ({exc})")
            continue
        values[var.group][var.field] = Secret(value) if var.secret else value
    for group, check in GROUP_CHECKS.items():
        declared = {v.field for v in VARIABLES if v.group == group}
        if group in values and declared <= set(values[group]):
            problems += check(values[group])
    if problems:
        raise SettingsError(
            "configuration problems (set them in the environment or .env; see .env.example):\n  "
            + "\n  ".join(problems)
        )
    return Settings({g: GROUP_TYPES[g](**fields_) for g, fields_ in values.items()})


def login_variables(group: str) -> tuple[str, str]:
    """The variables that hold a role's user and password (`cassandra_writer` -> CASSANDRA_APP_USER,
    CASSANDRA_APP_PASSWORD): what a refused login tells the user to check, never the values."""
    if GROUP_TYPES.get(group) is not Credentials:
        raise ValueError(f"{group!r} is not a login group (one of: "
                         f"{', '.join(g for g, t in GROUP_TYPES.items() if t is Credentials)})")
    by_field = {v.field: v.env for v in VARIABLES if v.group == group}
    return by_field["user"], by_field["password"]


def check_declarations() -> list[str]:
    """Every group's dataclass fields are exactly the variables declared for it (a drift test runs this)."""
    problems = []
    for group, cls in GROUP_TYPES.items():
        declared = sorted(v.field for v in VARIABLES if v.group == group)
        expected = sorted(f.name for f in fields(cls))
        if declared != expected:
            problems.append(f"group {group}: variables give {declared}, {cls.__name__} has {expected}")
    return problems


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def script_settings(*groups: str, level: str = "INFO") -> Settings | None:
    """A script's first steps: logging, `.env`, the settings of `groups`. On a configuration problem it
    logs every missing or invalid variable by name and returns None (the script then exits 2)."""
    import logging

    logging.basicConfig(level=level, format=LOG_FORMAT)
    load_dotenv_file()
    try:
        return load_settings(*groups)
    except SettingsError as exc:
        logging.getLogger("settings").error("%s", exc)
        return None
