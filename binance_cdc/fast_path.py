"""Spark SQL fast path of the CDC sink: Debezium upserts decoded in the JVM, exactly as binance_cdc.debezium would.

`route(df)` takes Kafka rows (topic, partition, offset, key, value) and returns, per message, without running
anything (pure DataFrame building):
- `dataset`: the dataset of the topic (the rule of debezium.dataset_for_topic), null for an unknown topic;
- `fast`: true only for an upsert the fast path converts to the very row the Python decoder would;
- `row_<dataset>`: for fast rows of that dataset, the Cassandra row (Dataset.cql_columns except
  cdc_written_at) and WRITETIME_COLUMN (the LSN, written as `USING TIMESTAMP`, not as a column);
- `fallback_key` / `fallback_value`: the raw bytes of every other message, for
  binance_cdc.cassandra_sink.write_partition, which stays the reference (it deletes, counts tombstones and
  writes dead letters with their precise reason).

A message is fast only if every one of these holds (anything else, including a check that cannot be
evaluated, goes to the fallback; a fallback row is never wrong, only slower):
- the value is valid UTF-8 holding exactly one JSON object (trailing data is refused as Python's json does);
  Jackson parses it strictly (no NaN/Infinity, no single quotes, no leading zeros, no comments), like Python;
- the envelope starts `{"before":<before>,"after":<after>,` (Debezium's order, compact as Kafka Connect's
  JsonConverter writes it) where <before> and <after> are, character for character, the JSON of the typed
  rows: so `after` has exactly the dataset's columns in their declared order, no duplicate, no extra or
  missing key, and every value has the JSON type of its kind (a decimal or text column holds a JSON string,
  not a number; bigint/int are integers in range; booleans are true/false); and no second top-level
  "after" follows. A schema/payload wrapper fails this (its first key is "schema"), and so do events whose
  columns come in another order than binance_cdc/datasets.py (correct, only slower: watch the fast/fallback
  counts);
- op is c, r or u; non-nullable columns are not null;
- decimals match ^-?[0-9]+(\\.[0-9]+)?$ and stay strings, which the spark-cassandra-connector turns into
  BigDecimal with their exact digits and scale;
- times are `YYYY-MM-DDTHH:MM:SS[.fff[000]]Z` (Debezium's ZonedTimestamp) with at most millisecond
  precision, as Cassandra timestamps hold (the Python path dead-letters finer times), year 1000..9999;
- source.lsn is a non-negative integer, source.ts_ms and ts_ms are integers within Python's datetime range;
- the transaction id (transaction.id, else source.txId) is null or digits[:digits], i.e. text that Python's
  str() of the same JSON value gives too.

Needs pyspark (a SparkSession with spark.sql.session.timeZone=UTC: bucket dates are UTC days).
"""

from __future__ import annotations

from binance_cdc import datasets
from binance_cdc.datasets import Dataset

WRITETIME_COLUMN = "cdc_lsn_writetime"  # bound to USING TIMESTAMP by the connector, never stored
DECIMAL_PATTERN = r"^-?[0-9]+(\.[0-9]+)?$"
# Millisecond precision at most: three fraction digits, possibly padded with zeros to six (Debezium's form).
TIME_PATTERN = r"^[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,3}0{0,3})?Z$"
TX_ID_PATTERN = r"^[0-9]+(:[0-9]+)?$"
# Python datetime's range (0001-01-01 .. 9999-12-31 23:59:59.999) in epoch milliseconds / days.
MIN_EPOCH_MS, MAX_EPOCH_MS = -62_135_596_800_000, 253_402_300_799_999
MIN_EPOCH_DAY, MAX_EPOCH_DAY = -719_162, 2_932_896
# Jackson's leniencies that Python's json module does not share.
JSON_OPTIONS = {"allowNonNumericNumbers": "false", "allowSingleQuotes": "false", "mode": "PERMISSIVE"}
TO_JSON_OPTIONS = {"ignoreNullFields": "false"}
SPARK_TYPES = {"text": "string", "decimal": "string", "timestamp": "string", "bigint": "bigint",
               "int": "int", "boolean": "boolean", "date": "int"}  # date: Debezium sends days since epoch


def image_schema(dataset: Dataset) -> str:
    """DDL of the `after`/`before` struct: JSON types as sent, decimals and times as their text."""
    return ", ".join(f"`{c.name}`: {SPARK_TYPES[c.kind]}" for c in dataset.columns)


def envelope_schema(dataset: Dataset) -> str:
    image = image_schema(dataset)
    return (f"`before` struct<{image}>, `after` struct<{image}>, `op` string, `ts_ms` bigint, "
            "`source` struct<`lsn`: bigint, `ts_ms`: bigint, `txId`: string>, `transaction` struct<`id`: string>")


def row_column(dataset: Dataset) -> str:
    return f"row_{dataset.name}"


def _check_names() -> None:
    for d in datasets.DATASETS.values():
        if WRITETIME_COLUMN in d.cql_columns:
            raise ValueError(f"{d.name} declares {WRITETIME_COLUMN}, the fast path's write-time column")


def dataset_expr(topic):
    """debezium.dataset_for_topic as a column: the first dataset whose suffix ends the topic, else null."""
    from pyspark.sql import functions as F

    expr = F.lit(None).cast("string")
    for d in reversed(list(datasets.DATASETS.values())):
        suffix = "." + d.topic_suffix
        expr = F.when(topic.endswith(suffix) & (F.length(topic) > len(suffix)), F.lit(d.name)).otherwise(expr)
    return expr


def _value_ok(kind: str, raw, nullable: bool):
    """Column: the raw value of one column is one the fast path converts exactly (null counts as not ok
    unless the column is nullable)."""
    from pyspark.sql import functions as F

    if kind == "decimal":
        ok = raw.rlike(DECIMAL_PATTERN)
    elif kind == "timestamp":
        ok = raw.rlike(TIME_PATTERN) & _utc_time(raw).isNotNull()
    elif kind == "date":
        ok = raw.between(MIN_EPOCH_DAY, MAX_EPOCH_DAY)
    elif kind in ("text", "bigint", "int", "boolean"):
        ok = raw.isNotNull()  # the JSON type itself is checked by the prefix comparison
    else:
        raise ValueError(f"unknown column kind {kind!r}")
    if nullable:
        return raw.isNull() | F.coalesce(ok, F.lit(False))
    return raw.isNotNull() & F.coalesce(ok, F.lit(False))


def _utc_time(raw):
    """A TIME_PATTERN text as a timestamp. The "Z" is dropped and the text read in the session time zone,
    UTC (micro_batch checks it): Spark parses a zone in the text again for every value, which costs more
    than the rest of the cast."""
    from pyspark.sql import functions as F

    return F.translate(raw, "Z", "").cast("timestamp")


def _cql_value(kind: str, raw):
    from pyspark.sql import functions as F

    if kind == "timestamp":
        return _utc_time(raw)
    if kind == "date":
        return F.date_add(F.lit("1970-01-01").cast("date"), raw)
    return raw  # decimals stay text: the connector parses them into exact BigDecimals


def _bucket(dataset: Dataset, source_value):
    from pyspark.sql import functions as F

    if dataset.bucket_unit == "day":
        return F.to_date(source_value)
    if dataset.bucket_unit == "month":
        return F.trunc(source_value, "month")
    raise ValueError(f"{dataset.name}: unknown bucket_unit {dataset.bucket_unit!r}")


def _in_epoch_ms(col):
    return col.between(MIN_EPOCH_MS, MAX_EPOCH_MS)


def dataset_checks(dataset: Dataset, env, text: str):
    """Column: true when `env`, the parsed envelope of a message of this dataset, qualifies for the fast path
    (`text`: name of the column holding the message as a string)."""
    from pyspark.sql import functions as F

    after, before = env["after"], env["before"]
    before_json = F.coalesce(F.to_json(before, TO_JSON_OPTIONS), F.lit("null"))
    head = F.concat(F.lit('{"before":'), before_json, F.lit(',"after":'))
    checks = [
        env["op"].isin("c", "r", "u"),
        after.isNotNull(),
        F.col(text).startswith(F.concat(head, F.to_json(after, TO_JSON_OPTIONS), F.lit(","))),
        # ... and that "after" key is the last one in the text (JSON keeps the last of duplicate keys)
        F.length(F.substring_index(F.col(text), '"after":', -1)) + F.length(head) == F.length(F.col(text)),
        env["source"]["lsn"] >= 0,
        _in_epoch_ms(env["source"]["ts_ms"]),
        _in_epoch_ms(env["ts_ms"]),
        tx_id(env).isNull() | tx_id(env).rlike(TX_ID_PATTERN),
    ]
    checks += [_value_ok(c.kind, after[c.name], c.nullable) for c in dataset.columns]
    ok = checks[0]
    for check in checks[1:]:
        ok = ok & check
    return F.coalesce(ok, F.lit(False))


def tx_id(env):
    from pyspark.sql import functions as F

    return F.coalesce(env["transaction"]["id"], env["source"]["txId"])


def cassandra_row(dataset: Dataset, env):
    """Column: struct of the Cassandra row of a fast upsert (cql_columns but cdc_written_at) + write time."""
    from pyspark.sql import functions as F

    after = env["after"]
    values = {c.name: _cql_value(c.kind, after[c.name]) for c in dataset.columns}
    if dataset.bucket_column:
        values[dataset.bucket_column] = _bucket(dataset, values[dataset.bucket_source])
    values.update({
        "cdc_op": env["op"],
        "cdc_source_lsn": env["source"]["lsn"],
        "cdc_source_ts": F.timestamp_millis(env["source"]["ts_ms"]),
        "cdc_event_ts": F.timestamp_millis(env["ts_ms"]),
        "cdc_tx_id": tx_id(env),
    })
    missing = set(dataset.cql_columns) - set(values) - {"cdc_written_at"}
    if missing:
        raise ValueError(f"{dataset.name}: fast path builds no value for {sorted(missing)}")
    fields = [values[name].alias(name) for name in dataset.cql_columns if name != "cdc_written_at"]
    return F.struct(*fields, env["source"]["lsn"].alias(WRITETIME_COLUMN))


def single_object_ok(value, text, parsed):
    """Column: the value is valid UTF-8 holding one JSON object and nothing else but whitespace.

    `parsed` is from_json("[" + text + "]"): Spark stops reading after the first complete value, so a value
    `{...}]<anything>` would pass unnoticed; no Debezium envelope contains `}` then `]`, so any value that
    does goes to the fallback."""
    from pyspark.sql import functions as F

    return (value.isNotNull() & (text == value.cast("string"))  # decoding replaced nothing
            & (F.size(parsed) == 1) & ~text.rlike(r"\}[ \t\r\n]*\]"))


def route(df):
    """Kafka rows -> (topic, partition, offset, dataset, op, fast, fallback_key, fallback_value, row_<dataset>...).

    Each message is parsed once, in the JVM, with its dataset's typed envelope schema."""
    from pyspark.sql import functions as F

    _check_names()
    text = F.decode(F.col("value"), "UTF-8")  # invalid UTF-8 becomes U+FFFD: see single_object_ok
    wrapped = F.concat(F.lit("["), text, F.lit("]"))
    parsed = df.select(
        "topic", "partition", "offset", "key", "value", text.alias("text"),
        dataset_expr(F.col("topic")).alias("dataset"),
        *[F.when(F.col("topic").endswith("." + d.topic_suffix),
                 F.from_json(wrapped, f"array<struct<{envelope_schema(d)}>>", JSON_OPTIONS)).alias(f"env_{d.name}")
          for d in datasets.DATASETS.values()],
    )
    fast_by_dataset = []
    for d in datasets.DATASETS.values():
        arr = F.col(f"env_{d.name}")
        fast_by_dataset.append(
            (F.col("dataset") == d.name) & single_object_ok(F.col("value"), F.col("text"), arr)
            & dataset_checks(d, arr[0], "text"))
    fast = fast_by_dataset[0]
    for f in fast_by_dataset[1:]:
        fast = fast | f
    routed = parsed.select("*", F.coalesce(fast, F.lit(False)).alias("fast"))
    op = F.coalesce(*[F.col(f"env_{d.name}")[0]["op"] for d in datasets.DATASETS.values()])
    return routed.select(
        "topic", "partition", "offset", "dataset",
        F.when(F.col("fast"), op).alias("op"), "fast",
        F.when(~F.col("fast"), F.col("key")).alias("fallback_key"),
        F.when(~F.col("fast"), F.col("value")).alias("fallback_value"),
        *[F.when(F.col("fast") & (F.col("dataset") == d.name), cassandra_row(d, F.col(f"env_{d.name}")[0]))
          .alias(row_column(d)) for d in datasets.DATASETS.values()],
    )


def fast_rows(routed, dataset: Dataset, written_at):
    """The dataset's fast rows, ready for the connector: Cassandra columns + cdc_written_at + write time."""
    from pyspark.sql import functions as F

    col = row_column(dataset)
    return (routed.where(F.col(col).isNotNull())
            .select(f"{col}.*", F.lit(written_at).cast("timestamp").alias("cdc_written_at")))


def fallback_rows(routed):
    """Messages for the Python path, in the column order write_partition expects."""
    from pyspark.sql import functions as F

    return routed.where(~F.col("fast")).select(
        "topic", "partition", "offset", F.col("fallback_key").alias("key"), F.col("fallback_value").alias("value"))
