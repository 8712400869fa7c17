"""Cassandra sessions from settings, and applying the cql/ files to any cluster.

`connect(cassandra, login)` opens a session to the cluster `cassandra` (CassandraSettings) as the role
`login` (Credentials: the stream's writer, the bridge's reader, the stack's admin). Contact points, port and local data centre come
from settings, so the same code reaches the local node or a remote cluster.

TLS (a remote cluster): with CASSANDRA_SSL=true, `ssl_context(cassandra)` gives the driver a context that
speaks TLS 1.2 or later and verifies each node's certificate against CASSANDRA_SSL_CA_FILE (else the
system's CAs) and, unless CASSANDRA_SSL_VERIFY_HOSTNAME=false, that it names the address the driver
connects to; CASSANDRA_SSL_CERT_FILE/KEY_FILE add a client certificate. The files must exist at the same
paths wherever the code runs (each Spark executor opens its own sessions).

The files in cql/ stay plain cqlsh-appliable: they name the keyspace `binance_test` and use the
single-node replication map. `cql_statements()` splits a file into statements and swaps those two literals
for the configured keyspace and replication map; `apply_cql_dir()` runs every file in
order.

Decimals stay exact on every path: cassandra-driver 3.30 renders a Decimal bound to a non-prepared statement
through float (`cql_encode_decimal` -> `float(val)`: 2820413769.36626970 arrives as 2820413769.3662696), so
sessions from `connect()` render it from its exact text instead; prepared statements were exact already.
Needs cassandra-driver; tests/unit/test_cassandra_conn.py covers the pure parts.
"""

from __future__ import annotations

import logging
import re
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Iterator

from binance_cdc.settings import CassandraSettings, Credentials

log = logging.getLogger(__name__)

FILE_KEYSPACE = "binance_test"
# The replication map the files are written with; whitespace may vary.
FILE_REPLICATION = re.compile(
    r"\{\s*'class'\s*:\s*'SimpleStrategy'\s*,\s*'replication_factor'\s*:\s*1\s*\}"
)
_KEYSPACE_WORD = re.compile(rf"\b{FILE_KEYSPACE}\b")


class CqlSyntaxError(ValueError):
    """A .cql file that cannot be split (an unterminated string or comment)."""


def split_statements(text: str) -> list[str]:
    """Statements of a CQL script without comments (`--`, `//`, `/* */`), split on `;` outside quotes."""
    statements: list[str] = []
    current: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        two = text[i:i + 2]
        if two in ("--", "//"):
            end = text.find("\n", i)
            i = n if end == -1 else end  # keep the newline as a separator
            continue
        if two == "/*":
            end = text.find("*/", i + 2)
            if end == -1:
                raise CqlSyntaxError(f"unterminated /* comment starting at offset {i}")
            current.append(" ")
            i = end + 2
            continue
        if two == "$$":
            end = text.find("$$", i + 2)
            if end == -1:
                raise CqlSyntaxError(f"unterminated $$ string starting at offset {i}")
            current.append(text[i:end + 2])
            i = end + 2
            continue
        if ch in ("'", '"'):
            j = i + 1
            while True:
                j = text.find(ch, j)
                if j == -1:
                    raise CqlSyntaxError(f"unterminated {ch} quote starting at offset {i}")
                if text[j + 1:j + 2] == ch:  # doubled quote is an escaped quote
                    j += 2
                    continue
                break
            current.append(text[i:j + 1])
            i = j + 1
            continue
        if ch == ";":
            statements.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    statements.append("".join(current))
    return [s.strip() for s in statements if s.strip()]


def substitute(statement: str, keyspace: str, replication: str) -> str:
    """Swap the files' keyspace name and single-node replication map for the configured ones."""
    statement = FILE_REPLICATION.sub(lambda _: replication, statement)
    return _KEYSPACE_WORD.sub(keyspace, statement)


def cql_statements(text: str, keyspace: str, replication: str) -> list[str]:
    return [substitute(s, keyspace, replication) for s in split_statements(text)]


def cql_decimal_literal(value: Decimal) -> str:
    """A Decimal as an exact CQL literal (keeps every digit and the scale)."""
    if value.is_snan():
        raise ValueError(f"signalling NaN {value!r} has no CQL literal")
    return str(value)  # '123.4500', '1E+3', 'NaN', 'Infinity', '-Infinity' are all valid CQL literals


class _ProtocolNegotiationFilter(logging.Filter):
    """The driver warns at every connect that it negotiated the protocol version down to what the server
    speaks: expected with Cassandra 5 (v5) and every other version, so it is noise in every script's log."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Downgrading core protocol version")


class _RefusedLoginFilter(logging.Filter):
    """A refused login makes the driver log its traceback (a warning per host, then "Control connection
    failed to connect" at ERROR) before connect() raises; the caller reports it as one line naming the
    role's variables (retry.log_in), so the traceback would only bury that line."""

    def filter(self, record: logging.LogRecord) -> bool:
        from binance_cdc.stream.retry import is_auth_failure

        exc = record.exc_info[1] if record.exc_info else None
        return exc is None or not is_auth_failure(exc)


logging.getLogger("cassandra.cluster").addFilter(_ProtocolNegotiationFilter())
logging.getLogger("cassandra.cluster").addFilter(_RefusedLoginFilter())


def ssl_context(cassandra: CassandraSettings):
    """The driver's ssl.SSLContext from settings, or None when CASSANDRA_SSL is false (the local node)."""
    import ssl

    if not cassandra.ssl:
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cassandra.ssl_ca_file or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # The chain is verified either way; only the name check can be turned off (nodes reached by an
    # address their certificates do not list, e.g. peers by IP).
    context.check_hostname = cassandra.ssl_verify_hostname
    if cassandra.ssl_cert_file:
        context.load_cert_chain(cassandra.ssl_cert_file, cassandra.ssl_key_file)
    return context


def connect(cassandra: CassandraSettings, login: Credentials, keyspace: str | None = None,
            timeout: float = 10.0, row_factory=None):
    """A cassandra.cluster.Session; close it with `session.cluster.shutdown()` (or use `session_scope`)."""
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import DCAwareRoundRobinPolicy, ExponentialReconnectionPolicy, TokenAwarePolicy

    profile = ExecutionProfile(
        load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=cassandra.local_dc)),
        request_timeout=timeout,
    )
    if row_factory is not None:
        profile.row_factory = row_factory
    cluster = Cluster(
        contact_points=list(cassandra.hosts),
        port=cassandra.port,
        auth_provider=PlainTextAuthProvider(username=login.user, password=login.password.reveal()),
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        connect_timeout=timeout,
        control_connection_timeout=timeout,
        # The driver's default waits up to 10 minutes between attempts to reach a node marked down: a
        # long-running stream would stay blind that long after a Cassandra restart. At most 10 s instead.
        reconnection_policy=ExponentialReconnectionPolicy(base_delay=1.0, max_delay=10.0),
        ssl_context=ssl_context(cassandra),
    )
    try:
        session = cluster.connect(keyspace)
    except Exception:
        cluster.shutdown()
        raise
    session.encoder.mapping[Decimal] = cql_decimal_literal
    return session


@contextmanager
def session_scope(cassandra: CassandraSettings, login: Credentials, **kwargs) -> Iterator:
    session = connect(cassandra, login, **kwargs)
    try:
        yield session
    finally:
        session.cluster.shutdown()


def apply_cql_file(session, path: Path, cassandra: CassandraSettings) -> int:
    """Execute every statement of one .cql file; returns how many ran."""
    statements = cql_statements(Path(path).read_text(), cassandra.keyspace, cassandra.replication)
    for statement in statements:
        try:
            session.execute(statement)
        except Exception as exc:
            raise RuntimeError(f"{path}: statement failed: {statement[:200]!r}: {exc}") from exc
    log.info("cql: applied %s (%d statements, keyspace %s)", Path(path).name, len(statements),
             cassandra.keyspace)
    return len(statements)


def apply_cql_dir(session, directory: Path, cassandra: CassandraSettings) -> int:
    """Apply every *.cql file in name order; returns the number of statements run."""
    files = sorted(Path(directory).glob("*.cql"))
    if not files:
        raise FileNotFoundError(f"no .cql files in {directory}")
    return sum(apply_cql_file(session, path, cassandra) for path in files)
