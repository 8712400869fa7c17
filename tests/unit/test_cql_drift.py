"""cql/01_tables.cql agrees with binance_cdc/datasets.py (columns, CQL types, partition and clustering
keys) and declares the dead-letter table the sink writes. Parses the file; needs no Cassandra."""

from __future__ import annotations

import re

import pytest

from binance_cdc import datasets
from binance_cdc.cassandra_conn import split_statements
from binance_cdc.stream.sink import DEAD_LETTER_COLUMNS, DEAD_LETTER_KEY, DEAD_LETTER_TABLE
from binance_cdc.settings import PROJECT_ROOT
from binance_cdc import change_log

CQL_FILE = PROJECT_ROOT / "cql" / "01_tables.cql"
CHANGE_LOG_FILE = PROJECT_ROOT / "cql" / "02_change_log.cql"
_CREATE = re.compile(r"^CREATE TABLE IF NOT EXISTS binance_test\.(\w+)\s*\((.*)\)\s*(WITH .*)?$", re.S | re.I)


def parse_tables(text: str) -> dict[str, dict]:
    """{table: {"columns": {name: type}, "partition": (...), "clustering": (...)}} of CREATE TABLE statements."""
    tables = {}
    for statement in split_statements(text):
        match = _CREATE.match(statement)
        if not match:
            continue
        name, body = match.group(1), match.group(2)
        key = re.search(r"PRIMARY KEY\s*\(\s*\(([^)]*)\)\s*(?:,([^)]*))?\)", body, re.I)
        assert key, f"{name}: PRIMARY KEY ((partition), clustering...) not found"
        columns = {}
        for line in body[:key.start()].split(","):
            words = line.split()
            if words:
                assert len(words) == 2, f"{name}: cannot read column definition {line.strip()!r}"
                columns[words[0]] = words[1].lower()
        split = lambda s: tuple(p.strip() for p in (s or "").split(",") if p.strip())  # noqa: E731
        tables[name] = {"columns": columns, "partition": split(key.group(1)), "clustering": split(key.group(2))}
    return tables


TABLES = parse_tables(CQL_FILE.read_text())


def test_every_dataset_and_the_dead_letters_have_a_table():
    assert set(TABLES) == set(datasets.DATASETS) | {DEAD_LETTER_TABLE}


@pytest.mark.parametrize("name", list(datasets.DATASETS))
def test_columns_and_types_match(name):
    dataset = datasets.get(name)
    expected = {col: datasets.CQL_TYPES[kind] for col, kind in dataset.cql_columns.items()}
    assert TABLES[name]["columns"] == expected


@pytest.mark.parametrize("name", list(datasets.DATASETS))
def test_keys_match(name):
    dataset = datasets.get(name)
    assert TABLES[name]["partition"] == dataset.cql_partition_key
    assert TABLES[name]["clustering"] == dataset.cql_clustering_key
    # Cassandra's key must still identify one Postgres row: natural key + the bucket derived from it.
    assert set(dataset.cql_partition_key + dataset.cql_clustering_key) == \
        set(dataset.primary_key) | ({dataset.bucket_column} if dataset.bucket_column else set())


def test_dead_letters_table():
    table = TABLES[DEAD_LETTER_TABLE]
    assert table["columns"] == DEAD_LETTER_COLUMNS
    assert table["partition"] + table["clustering"] == DEAD_LETTER_KEY


@pytest.mark.parametrize("table,columns,key", [
    (change_log.CHANGED_PARTITIONS, change_log.CHANGED_PARTITIONS_COLUMNS, change_log.CHANGED_PARTITIONS_KEY),
    (change_log.STREAM_PROGRESS, change_log.STREAM_PROGRESS_COLUMNS, change_log.STREAM_PROGRESS_KEY),
])
def test_change_log_tables(table, columns, key):
    declared = parse_tables(CHANGE_LOG_FILE.read_text())[table]
    assert declared["columns"] == columns
    assert declared["partition"] + declared["clustering"] == key


def test_change_log_marks_expire_as_the_bridge_assumes():
    ttl = re.search(r"changed_partitions.*?default_time_to_live\s*=\s*(\d+)", CHANGE_LOG_FILE.read_text(), re.S)
    assert ttl and int(ttl.group(1)) == change_log.MARK_TTL_S


def test_parser_sees_a_drift():
    drifted = CQL_FILE.read_text().replace("    qty             decimal,", "    qty             double,")
    assert parse_tables(drifted)["recent_trades"]["columns"]["qty"] == "double"


def test_dead_letters_migration_adds_exactly_the_columns_create_table_has_beyond_the_first_version():
    # Installs made before issue 9 have the first eight columns; cql/ adds the rest idempotently.
    first = ("topic", "received_date", "partition", "kafka_offset", "kafka_key", "payload", "error", "received_at")
    alter = re.search(r"ALTER TABLE IF EXISTS binance_test\.dead_letters ADD IF NOT EXISTS \(([^)]*)\)",
                      CQL_FILE.read_text())
    assert alter, "the idempotent ALTER of dead_letters is missing from cql/01_tables.cql"
    added = dict(part.split() for part in alter.group(1).split(","))
    assert added == {c: t for c, t in DEAD_LETTER_COLUMNS.items() if c not in first}
