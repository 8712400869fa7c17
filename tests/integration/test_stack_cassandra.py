"""The local Cassandra node enforces passwords and the app role's narrow rights (real node, `stack up cassandra`).

Tables and the scratch keyspace are created by the admin role with unique names and dropped afterwards.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from cassandra import AuthenticationFailed, Unauthorized
from cassandra.cluster import Cluster, NoHostAvailable

from binance_cdc.cassandra_conn import connect, session_scope
from binance_cdc.settings import Credentials, Secret


def _auth_errors(exc: NoHostAvailable) -> list[Exception]:
    return [err for err in exc.errors.values() if isinstance(err, AuthenticationFailed)]


@pytest.fixture(scope="module")
def admin(settings):
    with session_scope(settings.cassandra, settings.cassandra_admin) as session:
        yield session


@pytest.fixture(scope="module")
def app(settings):
    with session_scope(settings.cassandra, settings.cassandra_writer) as session:
        yield session


@pytest.fixture
def app_table(admin, settings):
    name = f"{settings.cassandra.keyspace}.it_auth_{uuid.uuid4().hex[:12]}"
    admin.execute(f"CREATE TABLE {name} (id text PRIMARY KEY, price decimal, qty bigint)")
    yield name
    admin.execute(f"DROP TABLE IF EXISTS {name}")


@pytest.fixture
def scratch_table(admin):
    keyspace = f"it_scratch_{uuid.uuid4().hex[:12]}"
    admin.execute(f"CREATE KEYSPACE {keyspace} WITH replication = {{'class': 'SimpleStrategy', "
                  f"'replication_factor': 1}}")
    admin.execute(f"CREATE TABLE {keyspace}.t (id text PRIMARY KEY, v int)")
    yield f"{keyspace}.t"
    admin.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")


def test_anonymous_connection_is_refused(settings):
    cluster = Cluster(contact_points=list(settings.cassandra.hosts), port=settings.cassandra.port,
                      connect_timeout=5, control_connection_timeout=5)
    try:
        with pytest.raises(NoHostAvailable) as info:
            cluster.connect()
    finally:
        cluster.shutdown()
    assert _auth_errors(info.value), info.value.errors
    assert "requires authentication" in str(info.value)


def test_default_superuser_login_is_refused(settings):
    with pytest.raises(NoHostAvailable) as info:
        connect(settings.cassandra, Credentials("cassandra", Secret("cassandra")), timeout=5)
    assert _auth_errors(info.value), info.value.errors


def test_default_role_is_locked(admin):
    row = admin.execute("SELECT can_login, is_superuser FROM system_auth.roles WHERE role = 'cassandra'").one()
    assert (row.can_login, row.is_superuser) == (False, False)


def test_app_role_holds_only_select_and_modify_on_its_keyspace(admin, settings):
    rows = admin.execute("SELECT resource, permissions FROM system_auth.role_permissions WHERE role = %s",
                         (settings.cassandra_writer.user,))
    assert {r.resource: set(r.permissions) for r in rows} == {
        f"data/{settings.cassandra.keyspace}": {"SELECT", "MODIFY"}}
    role = admin.execute("SELECT can_login, is_superuser, member_of FROM system_auth.roles WHERE role = %s",
                         (settings.cassandra_writer.user,)).one()
    assert (role.can_login, role.is_superuser, role.member_of) == (True, False, None)


@pytest.mark.parametrize("prepared", [False, True], ids=["simple", "prepared"])
def test_app_role_writes_and_reads_exact_decimals_in_its_keyspace(app, app_table, prepared):
    insert = f"INSERT INTO {app_table} (id, price, qty) VALUES (%s, %s, %s)"
    if prepared:
        insert = app.prepare(insert.replace("%s", "?"))
    app.execute(insert, ("BTCUSDT", Decimal("2820413769.36626970"), 9007199254740993))
    app.execute(insert, ("TINY", Decimal("0.00000001"), -1))
    row = app.execute(f"SELECT price, qty FROM {app_table} WHERE id = %s", ("BTCUSDT",)).one()
    assert row.qty == 9007199254740993
    assert row.price == Decimal("2820413769.36626970")
    assert str(row.price) == "2820413769.36626970"  # scale kept, not just the numeric value
    tiny = app.execute(f"SELECT price FROM {app_table} WHERE id = %s", ("TINY",)).one().price
    assert tiny.as_tuple() == Decimal("0.00000001").as_tuple()


def test_app_role_cannot_create_tables_in_its_keyspace(app, settings):
    name = f"{settings.cassandra.keyspace}.it_forbidden_{uuid.uuid4().hex[:12]}"
    with pytest.raises(Unauthorized, match="CREATE"):
        app.execute(f"CREATE TABLE {name} (id text PRIMARY KEY)")


def test_app_role_cannot_drop_or_alter_tables_in_its_keyspace(app, app_table):
    with pytest.raises(Unauthorized):
        app.execute(f"ALTER TABLE {app_table} ADD extra text")
    with pytest.raises(Unauthorized):
        app.execute(f"DROP TABLE {app_table}")


def test_app_role_cannot_write_or_read_another_keyspace(app, admin, scratch_table):
    with pytest.raises(Unauthorized, match="MODIFY"):
        app.execute(f"INSERT INTO {scratch_table} (id, v) VALUES ('x', 1)")
    with pytest.raises(Unauthorized):
        app.execute(f"TRUNCATE {scratch_table}")
    with pytest.raises(Unauthorized):
        app.execute(f"SELECT * FROM {scratch_table}")
    with pytest.raises(Unauthorized):
        app.execute(f"DROP TABLE {scratch_table}")
    assert admin.execute(f"SELECT id FROM {scratch_table}").all() == []
