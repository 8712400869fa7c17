"""Pure functions: one Binance JSON answer -> rows (tuples in `Dataset.columns` order).

Every value comes from the column's `api_field` (object key or array index) and is converted by the
column's kind by the exact rules of binance_cdc.values: decimals from strings (scale kept, floats refused),
times from epoch milliseconds to tz-aware UTC, ids to in-range ints. The answer's shape (Dataset.shape)
picks the function below; no function is written for a dataset name. Columns without `api_field` are derived here: the symbol asked for, the kline
interval, `is_closed` (close_time < Binance server time), the book side and level, and the server time of
the answer (`captured_at`, `observed_at`). Rows Binance sends for a dead symbol (a zero last price, as
MATICUSDT after its migration) are dropped and reported, never loaded as prices.

No I/O; tested with recorded answers in tests/fixtures/binance/.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Callable, Mapping, Sequence

from binance_cdc import values
from binance_cdc.datasets import Column, Dataset

SYMBOL_RE = re.compile(r"^[A-Z0-9_.-]{1,20}$")  # Binance's '^[A-Z0-9-_.]{1,20}$'
_DECIMAL_MATCH = values.DECIMAL_TEXT.match


class TransformError(ValueError):
    """The answer does not have the documented shape; the message names dataset, symbol and field."""


@dataclass
class Transformed:
    rows: list[tuple] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)  # symbol -> why its rows were not kept


def invalid_symbols(symbols: Sequence[str]) -> list[str]:
    return [s for s in symbols if not isinstance(s, str) or not SYMBOL_RE.fullmatch(s)]


def to_decimal(value: Any) -> Decimal:
    """Binance decimals arrive as strings (answers are parsed with parse_float=Decimal): a float here means
    a value went through binary floating point somewhere, and is refused rather than rounded."""
    if type(value) is str and _DECIMAL_MATCH(value):  # the usual case, without the general checks
        return Decimal(value)
    if isinstance(value, float):
        raise TypeError(f"refusing float {value!r}: decimals must arrive as strings")
    return values.exact_decimal(value)


def ms_to_utc(ms: Any) -> datetime:
    """Binance times are integer epoch milliseconds."""
    if isinstance(ms, bool) or not isinstance(ms, int):
        raise TypeError(f"expected integer epoch milliseconds, got {ms!r}")
    try:
        return values.EPOCH + timedelta(milliseconds=ms)  # whole milliseconds: exact in microseconds
    except OverflowError:
        raise ValueError(f"{ms} ms since the epoch is outside the datetime range") from None


CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "decimal": to_decimal,
    "timestamp": ms_to_utc,
    "bigint": lambda raw: values.exact_int("bigint", raw),
    "int": lambda raw: values.exact_int("int", raw),
    "boolean": values.exact_bool,
    "text": values.exact_text,
}


def build_row(
    dataset: Dataset,
    obj: Mapping[str, Any] | Sequence[Any],
    derived: Mapping[str, Any],
    outer: Mapping[str, Any] | None = None,
) -> tuple:
    """One row: derived values by column name, else `obj[api_field]` (or `outer[api_field]` for keys
    that live one level up, like depth's lastUpdateId), converted by kind."""
    values = []
    for column in dataset.columns:
        if column.name in derived:
            values.append(derived[column.name])
            continue
        values.append(_field(dataset, column, obj, outer, derived.get("symbol")))
    return tuple(values)


def build_rows(
    dataset: Dataset,
    items: Sequence[Any],
    derived: Mapping[str, Any],
    outer: Mapping[str, Any] | None = None,
) -> list[tuple]:
    """`build_row` for every item of one answer: which value comes from where is worked out once per
    answer (a key of `outer`, like depth's lastUpdateId, is converted once); an item that fails is built
    again by `build_row`, whose error names the field."""
    if not items:
        return []
    plan: list[tuple[bool, Any]] = []  # (constant?, value or (key, converter))
    for column in dataset.columns:
        key = column.api_field
        if column.name in derived:
            plan.append((True, derived[column.name]))
        elif isinstance(key, str) and outer is not None and not isinstance(items[0], Mapping):
            plan.append((True, _field(dataset, column, items[0], outer, derived.get("symbol"))))
        elif key is None:
            return [build_row(dataset, item, derived, outer) for item in items]  # raises, naming the column
        else:
            plan.append((False, (key, CONVERTERS[column.kind])))
    rows = []
    for item in items:
        try:
            rows.append(tuple([v if const else v[1](item[v[0]]) for const, v in plan]))
        except Exception:  # noqa: BLE001 - any failure is reported precisely by the slow path
            rows.append(build_row(dataset, item, derived, outer))
    return rows


def _field(dataset: Dataset, column: Column, obj: Any, outer: Any, symbol: Any) -> Any:
    key = column.api_field
    if key is None:
        raise TransformError(f"{dataset.name}: column {column.name} has no api_field and no derived value")
    source = obj
    if isinstance(key, str) and not isinstance(obj, Mapping):
        source = outer
    try:
        raw = source[key]
    except (KeyError, IndexError, TypeError):
        raise TransformError(f"{dataset.name} {symbol}: answer lacks field {key!r} ({column.name})") from None
    try:
        return CONVERTERS[column.kind](raw)
    except (TypeError, ValueError, ArithmeticError) as exc:
        raise TransformError(f"{dataset.name} {symbol}: field {key!r} ({column.name}): {exc}") from None


def _expect_list(dataset: Dataset, payload: Any, symbol: str | None) -> list:
    if not isinstance(payload, list):
        raise TransformError(f"{dataset.name} {symbol or ''}: expected a JSON array, got {type(payload).__name__}")
    return payload


def objects(dataset: Dataset, payload: Any, *, symbol: str | None, server_time: datetime) -> Transformed:
    rows = build_rows(dataset, _expect_list(dataset, payload, symbol), {"symbol": symbol})
    if dataset.sequence_column is None:
        return Transformed(rows)
    # A sequence is loaded by its id: one row per id, ascending. Binance sends them so; check, then sort
    # only an answer that is not.
    at = dataset.column_names.index(dataset.sequence_column)
    if all(a[at] < b[at] for a, b in zip(rows, rows[1:])):
        return Transformed(rows)
    by_id = {row[at]: row for row in rows}
    return Transformed(sorted(by_id.values(), key=lambda r: r[at]))


def book(dataset: Dataset, payload: Any, *, symbol: str | None, server_time: datetime) -> Transformed:
    if not isinstance(payload, Mapping):
        raise TransformError(f"{dataset.name} {symbol}: expected a JSON object with bids/asks")
    rows = []
    observed = {c.name: server_time for c in observation_columns(dataset)}
    at_level = dataset.column_names.index("level")
    for side, key in (("bid", "bids"), ("ask", "asks")):
        entries = payload.get(key) or []
        derived = {"symbol": symbol, "side": side, "level": 0, **observed}
        side_rows = build_rows(dataset, entries, derived, outer=payload)
        # level: 1 = best price on that side, in the order Binance lists them
        rows.extend(row[:at_level] + (level,) + row[at_level + 1:] for level, row in enumerate(side_rows, start=1))
    return Transformed(rows)


def candles(dataset: Dataset, payload: Any, *, symbol: str | None, server_time: datetime) -> Transformed:
    rows = []
    close_at = dataset.column(  # index of close_time in the 12-element kline array
        "close_time"
    ).api_field
    for kline in _expect_list(dataset, payload, symbol):
        try:
            closed = ms_to_utc(kline[close_at]) < server_time
        except (IndexError, TypeError, ValueError) as exc:
            raise TransformError(f"{dataset.name} {symbol}: bad kline {kline!r}: {exc}") from None
        derived = {"symbol": symbol, "interval": dataset.params["interval"], "is_closed": closed}
        rows.append(build_row(dataset, kline, derived))
    return Transformed(rows)


def is_dead_ticker(ticker: Mapping[str, Any]) -> bool:
    """A symbol that no longer trades answers a zero last price (with count 0 and firstId -1)."""
    price = ticker.get("lastPrice", ticker.get("price"))
    try:
        return price is not None and to_decimal(price) == 0
    except (TypeError, ValueError, ArithmeticError):
        return False


def _tickers(dataset: Dataset, payload: Any, derived: Mapping[str, Any]) -> Transformed:
    items = [payload] if isinstance(payload, Mapping) else _expect_list(dataset, payload, None)
    out = Transformed()
    for ticker in items:
        symbol = ticker.get("symbol") if isinstance(ticker, Mapping) else None
        if is_dead_ticker(ticker):
            out.dropped[str(symbol)] = (
                f"zero ticker (lastPrice/price {ticker.get('lastPrice', ticker.get('price'))}, "
                f"count {ticker.get('count')}, firstId {ticker.get('firstId')}): symbol does not trade"
            )
            continue
        out.rows.append(build_row(dataset, ticker, derived))
    return out


def tickers(dataset: Dataset, payload: Any, *, symbol: str | None, server_time: datetime) -> Transformed:
    return _tickers(dataset, payload, {c.name: server_time for c in observation_columns(dataset)})


def observation_columns(dataset: Dataset) -> list[Column]:
    """Times with no field in the answer: when Binance answered (the HTTP Date header)."""
    return [c for c in dataset.columns if c.kind == "timestamp" and c.api_field is None]


# One function per answer shape (binance_cdc.datasets.SHAPES), not per dataset.
SHAPES: dict[str, Callable[..., Transformed]] = {
    "objects": objects,
    "book": book,
    "candles": candles,
    "tickers": tickers,
}


def transform(dataset: Dataset, payload: Any, *, symbol: str | None, server_time: datetime) -> Transformed:
    """Rows of `dataset` from one answer; `symbol` is the one asked for (None for batched tickers)."""
    if server_time.tzinfo is None:
        raise ValueError("server_time must be tz-aware UTC")
    try:
        fn = SHAPES[dataset.shape]
    except KeyError:
        raise KeyError(f"dataset {dataset.name!r}: no transform for shape {dataset.shape!r}") from None
    return fn(dataset, payload, symbol=symbol, server_time=server_time)
