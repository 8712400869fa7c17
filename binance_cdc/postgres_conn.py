"""Postgres connections from settings: one place that knows how to reach a server as a given role.

`connect(where, login)` takes a `PostgresSettings` (the source database) or a `ServingSettings` (the
serving schema's server, which may be another one) and a `Credentials` role; `app_connection(settings)`
is the extractor's: the source database as PG_APP_USER. Every caller names itself with
`application_name`, so `pg_stat_activity` shows who holds what.

TLS comes from the place's settings: `sslmode` (PG_SSLMODE / SERVING_PG_SSLMODE) and, for verify-ca and
verify-full, `sslrootcert` (PG_SSLROOTCERT / SERVING_PG_SSLROOTCERT; unset, libpq looks in
~/.postgresql/root.crt). `connect_params()` is what reaches libpq (tests/unit/test_postgres_conn.py).
"""

from __future__ import annotations

from binance_cdc.settings import Credentials, PostgresSettings, ServingSettings, Settings


def tls_params(where: PostgresSettings | ServingSettings) -> dict[str, str]:
    """libpq's TLS parameters for a place: sslmode always, sslrootcert when one is configured."""
    params = {"sslmode": where.sslmode}
    if where.sslrootcert:
        params["sslrootcert"] = where.sslrootcert
    return params


def connect_params(where: PostgresSettings | ServingSettings, login: Credentials, application_name: str,
                   connect_timeout: int = 10) -> dict:
    """psycopg2.connect's keyword arguments (the password included: never log them)."""
    return {"host": where.host, "port": where.port, "dbname": where.database, **tls_params(where),
            "user": login.user, "password": login.password.reveal(), "application_name": application_name,
            "connect_timeout": connect_timeout}


def connect(where: PostgresSettings | ServingSettings, login: Credentials, application_name: str, *,
            autocommit: bool = False, connect_timeout: int = 10):
    """A psycopg2 connection; the caller closes it."""
    import psycopg2

    conn = psycopg2.connect(**connect_params(where, login, application_name, connect_timeout))
    conn.autocommit = autocommit
    return conn


def app_connection(settings: Settings, application_name: str = "binance_extractor", **kwargs):
    """The source database as the application role (groups postgres and postgres_app)."""
    return connect(settings.postgres, settings.postgres_app, application_name, **kwargs)


def sqlalchemy_url(where: PostgresSettings | ServingSettings, login: Credentials):
    """A SQLAlchemy URL (password included: pass it to create_engine, never print it)."""
    from sqlalchemy.engine import URL

    return URL.create("postgresql+psycopg2", username=login.user, password=login.password.reveal(),
                      host=where.host, port=where.port, database=where.database,
                      query=tls_params(where))
