"""Least privilege as the real servers enforce it: each role's allowed actions work, its refused ones are
refused by the server (Postgres InsufficientPrivilege, Cassandra Unauthorized).

Adds what test_stack_postgres.py, test_stack_cassandra.py, test_bridge.py and test_dashboard_serving.py do
not already check: the replication role reads only the published tables (none of `serving`, none of the
uncaptured `binance` tables); no role but the replication role can open a replication connection or create
a slot; the application role cannot read or write `serving`; no role can create tables or schemas; the
Cassandra roles cannot manage roles, keyspaces or grants, and the reader cannot write or read elsewhere.

Reads use `LIMIT 0` and refused statements change nothing, so the shared `binance` and `serving` schemas
are safe to probe; the one allowed slot is created in a throwaway name and dropped at once.
"""

from __future__ import annotations

import uuid

import psycopg2
import pytest
from cassandra import Unauthorized
from psycopg2 import errors, sql

from binance_cdc import postgres_conn
from binance_cdc.datasets import DATASETS
from binance_cdc.cassandra_conn import session_scope

POSTGRES_ROLES = ("postgres_app", "replication", "bridge_login", "grafana_login", "postgres_reader")


def pg(settings, role: str):
    where = settings.serving if role in ("bridge_login", "grafana_login") else settings.postgres
    return postgres_conn.connect(where, settings.group(role), "test_security_roles", autocommit=True)


def allowed(conn, statement: str, params=()) -> None:
    with conn.cursor() as cur:
        cur.execute(statement, params)


def refused(conn, statement: str, params=()) -> None:
    with conn.cursor() as cur, pytest.raises(errors.InsufficientPrivilege):
        cur.execute(statement, params)


@pytest.fixture(scope="module")
def tables(settings) -> dict[str, list[str]]:
    """Every table of `binance` and of the serving schema, and the published (captured) ones: what the
    publication holds is what Debezium may read, whichever schema it is in."""
    conn = pg(settings, "postgres_reader")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT table_schema, table_name FROM information_schema.tables "
                        "WHERE table_schema IN ('binance', %s) AND table_type = 'BASE TABLE'",
                        (settings.serving.schema,))
            rows = cur.fetchall()
            cur.execute("SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = %s",
                        (settings.connect.publication,))
            published = sorted(r[0] for r in cur.fetchall())
    finally:
        conn.close()
    found = {"binance": sorted(f"binance.{t}" for s, t in rows if s == "binance"),
             "serving": sorted(f"{s}.{t}" for s, t in rows if s == settings.serving.schema),
             "published": published}
    # The five datasets at least (a heartbeat table the connector writes may be published too).
    assert {f"binance.{name}" for name in DATASETS} <= set(found["published"])
    assert len(found["serving"]) >= 5
    return found


def test_replication_role_reads_the_published_tables_and_nothing_else(settings, tables):
    conn = pg(settings, "replication")
    try:
        for table in tables["published"]:
            allowed(conn, f"SELECT 1 FROM {table} LIMIT 0")
        uncaptured = [t for t in tables["binance"] if t not in tables["published"]]
        assert uncaptured  # trade_gaps at least: the extractor's bookkeeping is not Debezium's to read
        for table in uncaptured + tables["serving"]:
            refused(conn, f"SELECT 1 FROM {table} LIMIT 0")
    finally:
        conn.close()


def test_application_role_cannot_read_or_write_serving(settings, tables):
    conn = pg(settings, "postgres_app")
    try:
        for table in tables["binance"]:
            allowed(conn, f"SELECT 1 FROM {table} LIMIT 0")
        for table in tables["serving"]:
            refused(conn, f"SELECT 1 FROM {table} LIMIT 0")
            refused(conn, f"DELETE FROM {table} WHERE false")
        refused(conn, f"INSERT INTO {settings.serving.schema}.latest_prices (symbol) VALUES ('X')")
    finally:
        conn.close()


@pytest.mark.parametrize("role", [r for r in POSTGRES_ROLES if r != "replication"])
def test_only_the_replication_role_can_create_a_slot_or_open_a_replication_connection(settings, role):
    conn = pg(settings, role)
    try:
        refused(conn, "SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (f"test_{uuid.uuid4().hex[:12]}",))
    finally:
        conn.close()
    login = settings.group(role)
    with pytest.raises(psycopg2.OperationalError, match="must be superuser or replication role"):
        psycopg2.connect(host=settings.postgres.host, port=settings.postgres.port, dbname=settings.postgres.database,
                         user=login.user, password=login.password.reveal(), replication="database",
                         connect_timeout=10).close()


def test_the_replication_role_opens_a_replication_connection(settings):
    login = settings.replication
    conn = psycopg2.connect(host=settings.postgres.host, port=settings.postgres.port,
                            dbname=settings.postgres.database, user=login.user, password=login.password.reveal(),
                            replication="database", connect_timeout=10)
    try:
        with conn.cursor() as cur:
            cur.execute("IDENTIFY_SYSTEM")
            assert len(cur.fetchone()) == 4
    finally:
        conn.close()


@pytest.mark.parametrize("role", POSTGRES_ROLES)
def test_no_role_creates_schemas_or_tables(settings, role):
    conn = pg(settings, role)
    name = f"zz_{uuid.uuid4().hex[:10]}"
    try:
        refused(conn, f"CREATE SCHEMA {name}")
        for schema in ("binance", settings.serving.schema, "public"):
            refused(conn, f"CREATE TABLE {schema}.{name} (i int)")
    finally:
        conn.close()


def test_bridge_role_writes_serving_only(settings, tables):
    """Its writes go through (a constraint, not a privilege, stops the empty row); `binance` is closed."""
    conn = pg(settings, "bridge_login")
    try:
        for table in tables["serving"]:
            allowed(conn, f"SELECT 1 FROM {table} LIMIT 0")
            allowed(conn, f"DELETE FROM {table} WHERE false")
        with conn.cursor() as cur, pytest.raises(errors.NotNullViolation):
            cur.execute(f"INSERT INTO {settings.serving.schema}.latest_prices (symbol) VALUES ('X')")
        for table in tables["binance"]:
            refused(conn, f"SELECT 1 FROM {table} LIMIT 0")
            refused(conn, f"DELETE FROM {table} WHERE false")
    finally:
        conn.close()


@pytest.mark.parametrize("role", ["grafana_login", "postgres_reader"])
def test_read_roles_read_and_write_nothing(settings, tables, role):
    conn = pg(settings, role)
    readable = tables["serving"] + (tables["binance"] if role == "postgres_reader" else [])
    try:
        for table in readable:
            allowed(conn, f"SELECT 1 FROM {table} LIMIT 0")
            refused(conn, f"DELETE FROM {table} WHERE false")
            refused(conn, f"UPDATE {table} SET {_first_column(conn, table)} = {_first_column(conn, table)} WHERE false")
        for table in (t for t in tables["binance"] if t not in readable):
            refused(conn, f"SELECT 1 FROM {table} LIMIT 0")
    finally:
        conn.close()


def _first_column(conn, table: str) -> str:
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT * FROM {} LIMIT 0").format(sql.Identifier(*table.split("."))))
        return cur.description[0].name


# --- Cassandra -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def other_keyspace(settings):
    """A keyspace none of the pipeline's roles was granted anything on."""
    with session_scope(settings.cassandra, settings.cassandra_admin, timeout=60) as admin:
        name = f"it_other_{uuid.uuid4().hex[:10]}"
        admin.execute(f"CREATE KEYSPACE {name} WITH replication = {{'class': 'SimpleStrategy', "
                      "'replication_factor': 1}")
        try:
            admin.execute(f"CREATE TABLE {name}.t (id text PRIMARY KEY, v int)")
            yield name
        finally:
            admin.execute(f"DROP KEYSPACE IF EXISTS {name}")


@pytest.mark.parametrize("role", ["cassandra_writer", "cassandra_reader"])
def test_cassandra_roles_manage_nothing(settings, role):
    login = settings.group(role)
    name = f"it_forbidden_{uuid.uuid4().hex[:10]}"
    with session_scope(settings.cassandra, login) as session:
        for statement in (
            f"CREATE KEYSPACE {name} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}",
            f"CREATE ROLE {name} WITH PASSWORD = 'x' AND LOGIN = true",
            f"GRANT SELECT ON ALL KEYSPACES TO {login.user}",
            f"ALTER ROLE {login.user} WITH SUPERUSER = true",
            "SELECT role, salted_hash FROM system_auth.roles",
            f"DROP KEYSPACE {settings.cassandra.keyspace}",
        ):
            with pytest.raises(Unauthorized):
                session.execute(statement)


def test_cassandra_reader_reads_its_keyspace_only(settings, other_keyspace):
    with session_scope(settings.cassandra, settings.cassandra_reader) as session:
        session.execute(f"SELECT * FROM {settings.cassandra.keyspace}.latest_prices LIMIT 1")
        for statement in (
            f"INSERT INTO {settings.cassandra.keyspace}.latest_prices (symbol) VALUES ('X')",
            f"TRUNCATE {settings.cassandra.keyspace}.latest_prices",
            f"SELECT * FROM {other_keyspace}.t",
            f"INSERT INTO {other_keyspace}.t (id, v) VALUES ('x', 1)",
        ):
            with pytest.raises(Unauthorized):
                session.execute(statement)
