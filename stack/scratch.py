"""Throwaway namespaces on the local stack for tests and benchmarks: a Cassandra keyspace built from cql/
and a serving schema built from sql/05_serving.sql (optionally a source schema shaped like `binance`),
with the same grants as the real ones, and a Settings that points every stage at them.

    with scratch_namespace(settings) as ns:
        bridge.run(ns.settings)          # reads ns.keyspace, writes ns.serving_schema

Nothing the user's pipeline (or `make demo`'s background stream) uses is touched, and everything is
dropped on exit.
"""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Iterator

from binance_cdc.cassandra_conn import apply_cql_dir, connect
from binance_cdc.datasets import DATASETS
from binance_cdc.settings import PROJECT_ROOT, Settings
from stack import postgres as stack_postgres


@dataclass
class Namespace:
    keyspace: str
    serving_schema: str
    source_schema: str | None
    settings: Settings  # every group as given, with the keyspace and serving schema swapped
    admin: object  # Cassandra session as the admin role


def with_namespace(settings: Settings, keyspace: str, serving_schema: str) -> Settings:
    groups = {g: settings.group(g) for g in settings.loaded}
    groups["cassandra"] = replace(settings.cassandra, keyspace=keyspace)
    groups["serving"] = replace(settings.serving, schema=serving_schema)
    return Settings(groups)


@contextmanager
def scratch_namespace(settings: Settings, prefix: str = "scratch", source: bool = False) -> Iterator[Namespace]:
    suffix = uuid.uuid4().hex[:10]
    keyspace, serving_schema = f"{prefix}_{suffix}", f"{prefix}_serving_{suffix}"
    source_schema = f"{prefix}_source_{suffix}" if source else None
    scratch = with_namespace(settings, keyspace, serving_schema)
    admin = connect(scratch.cassandra, settings.cassandra_admin, timeout=120)
    try:
        apply_cql_dir(admin, PROJECT_ROOT / "cql", scratch.cassandra)
        admin.execute(f"GRANT SELECT ON KEYSPACE {keyspace} TO {settings.cassandra_reader.user}")
        for permission in ("SELECT", "MODIFY"):
            admin.execute(f"GRANT {permission} ON KEYSPACE {keyspace} TO {settings.cassandra_writer.user}")
        variables = stack_postgres.sql_variables(settings)
        variables[variables.index(f"serving_schema={settings.serving.schema}")] = f"serving_schema={serving_schema}"
        stack_postgres.psql(settings, *variables, "-f", str(PROJECT_ROOT / "sql" / "05_serving.sql"),
                            dbname=settings.serving.database)
        if source_schema:
            tables = "".join(f"CREATE TABLE {source_schema}.{name} (LIKE binance.{name} INCLUDING ALL);"
                             for name in DATASETS)
            stack_postgres.psql(settings, "-c", f"CREATE SCHEMA {source_schema}; {tables}"
                                f"GRANT USAGE ON SCHEMA {source_schema} TO {settings.postgres_app.user};"
                                f"GRANT ALL ON ALL TABLES IN SCHEMA {source_schema} TO {settings.postgres_app.user};")
        yield Namespace(keyspace, serving_schema, source_schema, scratch, admin)
    finally:
        drop = f'DROP SCHEMA IF EXISTS "{serving_schema}" CASCADE;'
        if source_schema:
            drop += f'DROP SCHEMA IF EXISTS "{source_schema}" CASCADE;'
        stack_postgres.psql(settings, "-c", drop, dbname=settings.serving.database)
        admin.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")
        admin.cluster.shutdown()
