"""One settings object, built once from the environment (and `.env`, through python-dotenv).

Each script asks for the groups it needs (`load_settings("postgres", "binance")`); every missing or
invalid variable of those groups is reported together, by name, in one `SettingsError`. Secrets are
`Secret` strings: their repr and str in logs are masked, `.reveal()` gives the value to a client.
`.env.example` lists every variable declared here (tests/unit/test_settings.py checks it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class SettingsError(ValueError):
    """Raised with every problem found, one per line, each naming its variable."""


class Secret:
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


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if value <= 0:
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
    parse: Callable[[str], Any] = str
    default: str | None = None  # None: required
    secret: bool = False
    doc: str = ""


VARIABLES: tuple[Var, ...] = (
    # Postgres: the application role loads `binance`; the replication role is Debezium's.
    Var("PG_HOST", "postgres", default="127.0.0.1", doc="Postgres host"),
    Var("PG_PORT", "postgres", _positive_int, "55432", doc="Postgres port"),
    Var("PG_DATABASE", "postgres", default="binance", doc="database holding schema binance"),
    Var("PG_APP_USER", "postgres", default="binance_app", doc="role the extractor writes with"),
    Var("PG_APP_PASSWORD", "postgres", secret=True, doc="password of PG_APP_USER"),
    Var("PG_SSLMODE", "postgres", default="prefer", doc="libpq sslmode (require for a cloud database)"),
    Var("PG_REPLICATION_USER", "replication", default="binance_cdc", doc="role Debezium connects with"),
    Var("PG_REPLICATION_PASSWORD", "replication", secret=True, doc="password of PG_REPLICATION_USER"),
    # Binance
    Var("BINANCE_BASE_URL", "binance", _url, "https://api.binance.com",
        doc="API base URL; https://data-api.binance.vision serves market data where api.binance.com answers 451"),
    Var("BINANCE_SYMBOLS", "binance", _csv,
        "BTCUSDT,ETHUSDT,BNBUSDT,XRPUSDT,SOLUSDT,ADAUSDT,DOGEUSDT,MATICUSDT,DOTUSDT,AVAXUSDT",
        doc="comma-separated symbols"),
    Var("BINANCE_WEIGHT_SHARE", "binance", _share, "0.5",
        doc="share of the 6000/min request-weight budget one run may use"),
    Var("BINANCE_TIMEOUT_S", "binance", _positive_float, "10", doc="per-request timeout in seconds"),
    Var("BINANCE_MAX_WORKERS", "binance", _positive_int, "8", doc="concurrent requests"),
    Var("BINANCE_MAX_RETRIES", "binance", _positive_int, "4", doc="retries on 429/5xx/timeouts"),
    # Kafka (local broker or Confluent Cloud)
    Var("KAFKA_BOOTSTRAP_SERVERS", "kafka", default="127.0.0.1:19092", doc="Kafka bootstrap servers"),
    Var("KAFKA_SECURITY_PROTOCOL", "kafka", _choice("PLAINTEXT", "SASL_SSL"), "PLAINTEXT",
        doc="PLAINTEXT locally, SASL_SSL for Confluent Cloud"),
    Var("KAFKA_SASL_USERNAME", "kafka", default="", doc="Confluent Cloud API key (SASL_SSL only)"),
    Var("KAFKA_SASL_PASSWORD", "kafka", default="", secret=True, doc="Confluent Cloud API secret"),
    Var("TOPIC_PREFIX", "kafka", default="binance", doc="Debezium topic.prefix: topics are <prefix>.binance.<table>"),
    # Kafka Connect + Debezium
    Var("CONNECT_URL", "connect", _url, "http://127.0.0.1:8083", doc="Kafka Connect REST API"),
    Var("DEBEZIUM_SLOT_NAME", "connect", default="binance_slot", doc="logical replication slot"),
    Var("DEBEZIUM_PUBLICATION", "connect", default="binance_publication", doc="publication of the five tables"),
    # Cassandra
    Var("CASSANDRA_HOSTS", "cassandra", _csv, "127.0.0.1", doc="comma-separated contact points"),
    Var("CASSANDRA_PORT", "cassandra", _positive_int, "9042", doc="CQL native port"),
    Var("CASSANDRA_LOCAL_DC", "cassandra", default="datacenter1", doc="local data centre for the driver"),
    Var("CASSANDRA_KEYSPACE", "cassandra", default="binance_test", doc="keyspace the stream writes"),
    Var("CASSANDRA_REPLICATION", "cassandra", default="{'class': 'SimpleStrategy', 'replication_factor': 1}",
        doc="keyspace replication map (NetworkTopologyStrategy for clusters)"),
    Var("CASSANDRA_APP_USER", "cassandra", default="binance_writer", doc="role with rights on the keyspace only"),
    Var("CASSANDRA_APP_PASSWORD", "cassandra", secret=True, doc="password of CASSANDRA_APP_USER"),
    Var("CASSANDRA_ADMIN_USER", "cassandra_admin", default="binance_admin",
        doc="superuser that replaces the default cassandra/cassandra (setup only)"),
    Var("CASSANDRA_ADMIN_PASSWORD", "cassandra_admin", secret=True, doc="password of CASSANDRA_ADMIN_USER"),
    # Spark
    Var("SPARK_CHECKPOINT_DIR", "spark", default=".local/checkpoints/binance",
        doc="durable checkpoint directory (HDFS/S3 path on a cluster)"),
    Var("SPARK_TRIGGER_SECONDS", "spark", _positive_float, "1", doc="micro-batch trigger interval"),
    Var("SPARK_MAX_OFFSETS_PER_TRIGGER", "spark", _positive_int, "100000", doc="cap on events per micro-batch"),
    Var("SPARK_STARTING_OFFSETS", "spark", _choice("earliest", "latest"), "earliest",
        doc="where a new query starts (a restart resumes from its checkpoint)"),
)

GROUPS = tuple(dict.fromkeys(v.group for v in VARIABLES))


class Settings:
    """Parsed values of the requested groups, as attributes named after the variables in lower case."""

    def __init__(self, values: Mapping[str, Any], groups: tuple[str, ...]) -> None:
        self._values = dict(values)
        self.groups = groups

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_values"][name]
        except KeyError:
            raise AttributeError(f"setting {name!r} is not loaded (groups: {self.groups})") from None

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self._values.items())
        return f"Settings({shown})"

    def secret(self, name: str) -> str:
        value = getattr(self, name)
        return value.reveal() if isinstance(value, Secret) else value


def load_dotenv_file(path: Path | None = None) -> None:
    """Load `.env` (never overriding the real environment). Called by each script's main()."""
    from dotenv import load_dotenv

    load_dotenv(path or PROJECT_ROOT / ".env", override=False)


def load_settings(*groups: str, env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise ValueError(f"unknown settings groups {unknown}; known: {GROUPS}")
    wanted = groups or GROUPS
    values: dict[str, Any] = {}
    problems: list[str] = []
    for var in VARIABLES:
        if var.group not in wanted:
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
        values[var.env.lower()] = Secret(value) if var.secret else value
    if problems:
        raise SettingsError(
            "configuration problems (set them in the environment or .env; see .env.example):\n  "
            + "\n  ".join(problems)
        )
    return Settings(values, tuple(wanted))
