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


# ---- every dataset is fully handled by the code, not only by the DDL ----------------------------------------
# A dataset the code does not handle must fail here, not in a run.


@pytest.mark.parametrize("name", list(datasets.DATASETS))
def test_every_dataset_has_a_transform_for_its_shape(name):
    from binance_cdc.extract import transforms

    assert datasets.DATASETS[name].shape in transforms.SHAPES


def test_every_shape_has_a_transform_and_no_transform_lacks_a_shape():
    from binance_cdc.extract import transforms

    assert set(transforms.SHAPES) == set(datasets.SHAPES)


@pytest.mark.parametrize("name", list(datasets.DATASETS))
def test_every_dataset_has_a_weight_for_every_call_the_extractor_makes(name):
    dataset = datasets.DATASETS[name]
    call = {**dataset.params, "symbols": '["BTCUSDT"]'} if dataset.batched else {"symbol": "BTCUSDT", **dataset.params}
    assert dataset.request_weight(call) > 0
    if dataset.cursor is not None:
        assert dataset.cursor.weight.charge({"symbol": "BTCUSDT", dataset.cursor.param: 1, "limit": 1000}) > 0


@pytest.mark.parametrize("name", list(datasets.DATASETS))
def test_the_simulator_serves_and_charges_every_endpoint_the_same_weight(name):
    from simulator import api
    from simulator.weights import request_weight

    dataset = datasets.DATASETS[name]
    paths = [dataset.endpoint] + ([dataset.cursor.endpoint] if dataset.cursor else [])
    for path in paths:
        assert path in api.PATHS
    call = {**dataset.params, "symbols": '["A","B"]'} if dataset.batched else {"symbol": "A", **dataset.params}
    assert request_weight(dataset.endpoint, {k: str(v) for k, v in call.items()}) == dataset.request_weight(call)


def test_endpoints_shared_by_datasets_agree_on_their_weight():
    by_path: dict[str, set] = {}
    for d in datasets.DATASETS.values():
        by_path.setdefault(d.endpoint, set()).add(d.weight)
        if d.cursor is not None:
            by_path.setdefault(d.cursor.endpoint, set()).add(d.cursor.weight)
    assert all(len(weights) == 1 for weights in by_path.values()), by_path


def test_every_dataset_has_a_place_in_the_load_order_and_run_takes_any_dataset():
    from dataclasses import replace

    order = datasets.in_load_order(datasets.DATASETS.values())
    assert [d.name for d in order] == ["latest_prices", "daily_ticker", "klines", "order_book", "recent_trades"]
    priorities = [d.load_priority for d in datasets.DATASETS.values()]
    assert len(set(priorities)) == len(priorities)
    newcomer = replace(datasets.LATEST_PRICES, name="newcomer", load_priority=15)
    assert [d.name for d in datasets.in_load_order([*datasets.DATASETS.values(), newcomer])][:3] == [
        "latest_prices", "newcomer", "daily_ticker"]


@pytest.mark.parametrize("name", list(datasets.DATASETS))
def test_cursor_columns_exist_and_every_sequence_is_an_immutable_bigint(name):
    dataset = datasets.DATASETS[name]
    if dataset.cursor is None:
        return
    kind = dataset.kinds[dataset.cursor.column]
    if dataset.cursor.kind == "sequence":
        assert kind == "bigint" and dataset.on_conflict == "ignore"
        assert "symbol" in dataset.primary_key and dataset.cursor.column in dataset.primary_key
    else:
        assert kind == "timestamp" and dataset.cursor.column in dataset.primary_key


def test_every_column_kind_has_a_converter_on_every_side():
    from binance_cdc import values
    from binance_cdc.extract import load, transforms
    from binance_cdc.stream.debezium import convert_value

    assert set(datasets.PG_TYPES) == set(datasets.CQL_TYPES) == set(values.KINDS) == set(load.COPY_FORMATS)
    used = {c.kind for d in datasets.DATASETS.values() for c in d.columns}
    assert used <= set(transforms.CONVERTERS)  # every kind a dataset declares can be read from Binance
    samples = {"text": "x", "decimal": "1.5", "timestamp": "2024-01-01T00:00:00Z", "bigint": 1, "int": 1,
               "boolean": True, "date": "2024-01-01"}
    assert set(samples) == set(values.KINDS)
    for kind, raw in samples.items():
        convert_value(kind, raw)  # raises for a kind the decoder does not know


def test_trade_gaps_has_the_columns_the_extractor_writes():
    text = SQL_FILE.read_text()
    for column in ("reason", "filled_count", "closed_at", "updated_at"):
        assert re.search(rf"ALTER TABLE binance\.trade_gaps ADD COLUMN IF NOT EXISTS {column}\b", text), column
