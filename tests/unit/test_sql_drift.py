"""sql/02_tables.sql agrees with binance_cdc/datasets.py: the same columns in the same order, the
Postgres type of each column's kind (NUMERIC for every decimal, timestamptz for every time), NOT NULL
where the dataset says so, and the natural primary key. Parses the file; needs no Postgres."""

from __future__ import annotations

import re

import pytest

from binance_cdc import datasets
from binance_cdc.settings import PROJECT_ROOT

SQL_FILE = PROJECT_ROOT / "sql" / "02_tables.sql"
_CREATE = re.compile(r"CREATE TABLE IF NOT EXISTS binance\.(\w+)\s*\((.*?)\n\);", re.S | re.I)


def parse_tables(text: str) -> dict[str, dict]:
    tables = {}
    for name, body in _CREATE.findall(text):
        columns, key = [], ()
        for line in body.strip().splitlines():
            line = line.strip().rstrip(",")
            if not line or line.startswith("--"):
                continue
            pk = re.fullmatch(r"PRIMARY KEY \(([^)]*)\)", line, re.I)
            if pk:
                key = tuple(part.strip() for part in pk.group(1).split(","))
                continue
            words = line.split()
            columns.append({"name": words[0], "type": words[1].lower(), "not_null": "NOT NULL" in line.upper()})
        tables[name] = {"columns": columns, "primary_key": key}
    return tables


TABLES = parse_tables(SQL_FILE.read_text())


def test_every_dataset_has_a_table():
    assert set(datasets.DATASETS) <= set(TABLES)


@pytest.mark.parametrize("name", list(datasets.DATASETS))
def test_columns_types_and_nullability(name):
    dataset = datasets.DATASETS[name]
    declared = TABLES[name]["columns"]
    assert [c["name"] for c in declared] == list(dataset.column_names)
    for column, sql_column in zip(dataset.columns, declared):
        assert sql_column["type"] == datasets.PG_TYPES[column.kind], column.name
        assert sql_column["not_null"] == (not column.nullable), column.name


@pytest.mark.parametrize("name", list(datasets.DATASETS))
def test_primary_key_is_the_natural_key(name):
    assert TABLES[name]["primary_key"] == datasets.DATASETS[name].primary_key


@pytest.mark.parametrize("name", list(datasets.DATASETS))
def test_replica_identity_full(name):
    # Deletes must carry every column in `before`: the Cassandra partition key includes a derived bucket.
    assert re.search(rf"ALTER TABLE binance\.{name}\s+REPLICA IDENTITY FULL;", SQL_FILE.read_text())


def test_no_float_types_anywhere():
    text = SQL_FILE.read_text().lower()
    assert not re.search(r"\b(real|double precision|float\d*)\b", text)
