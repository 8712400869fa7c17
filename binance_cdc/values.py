"""Column kinds and the exact value rules every stage shares. Pure, no I/O.

The pipeline reads values in three input formats: Binance JSON (binance_cdc.extract.transforms), Debezium
JSON (binance_cdc.stream.debezium) and Python rows formatted for COPY (binance_cdc.extract.load). Each
keeps its own format specifics there; what must be the same everywhere lives here:

- `KINDS`: the logical column kinds a Dataset may declare (binance_cdc.datasets maps each to Postgres and
  Cassandra types);
- decimals are exact: from a decimal string (`DECIMAL_TEXT`), a Decimal or an int, never a float or a
  bool, and finite (Cassandra's decimal cannot hold NaN or infinity);
- integers are JSON integers (not bools) within the range of their kind (`INT_RANGES`);
- times are tz-aware UTC datetimes; epoch integers convert exactly (`epoch_to_datetime`) or fail, and an
  ISO-8601 text must carry an offset (`parse_iso_utc`).

Every rule raises TypeError (wrong type) or ValueError (right type, bad value) with a message that says
why; callers add the dataset, column and topic.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

KINDS = ("text", "decimal", "timestamp", "bigint", "int", "boolean", "date")
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
DECIMAL_TEXT = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
INT_RANGES = {"int": (-(2 ** 31), 2 ** 31 - 1), "bigint": (-(2 ** 63), 2 ** 63 - 1)}


BRIEF_CHARS = 80


def brief(raw: Any, limit: int = BRIEF_CHARS) -> str:
    """repr() of a value cut to `limit` characters: error messages (and so dead-letter reasons and logs) stay
    small whatever a message holds; the full value is in the dead letter's payload."""
    text = repr(raw)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


def exact_decimal(raw: Any) -> Decimal:
    """A decimal string, Decimal or int as an exact, finite Decimal (scale kept)."""
    if isinstance(raw, str):
        if not DECIMAL_TEXT.match(raw):
            raise ValueError(f"not a decimal number: {brief(raw)}")
        try:
            return Decimal(raw)  # digits, one point, an exponent: finite, exact (construction never rounds)
        except ArithmeticError:  # an exponent beyond what Decimal can hold
            raise ValueError(f"decimal exponent out of range: {brief(raw)}") from None
    elif isinstance(raw, (Decimal, int)) and not isinstance(raw, bool):
        value = Decimal(raw)
    else:
        raise TypeError(f"expected a decimal string, got {brief(raw)}")
    return finite(value, raw)


def finite(value: Decimal, raw: Any) -> Decimal:
    if not value.is_finite():
        raise ValueError(f"{brief(raw)} is not a finite number (Cassandra decimal cannot hold it)")
    return value


def exact_int(kind: str, raw: Any) -> int:
    """A JSON integer (never a bool) within the range of `kind` ("int" or "bigint")."""
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise TypeError(f"expected an integer, got {brief(raw)}")
    low, high = INT_RANGES[kind]
    if not low <= raw <= high:
        raise ValueError(f"{raw} is out of range for {kind}")
    return raw


def exact_bool(raw: Any) -> bool:
    if not isinstance(raw, bool):
        raise TypeError(f"expected true/false, got {brief(raw)}")
    return raw


def exact_text(raw: Any) -> str:
    if not isinstance(raw, str):
        raise TypeError(f"expected a string, got {brief(raw)}")
    try:
        # JSON's \ud800 escapes give lone surrogates: no UTF-8 exists for them, so Postgres could not have
        # sent one and the Cassandra driver would fail the whole write batch encoding it.
        raw.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"text is not valid Unicode ({exc.reason} at {exc.start})") from None
    return raw


def epoch_to_datetime(value: int, per_second: int) -> datetime:
    """`value` units of 1/`per_second` s since the epoch, exactly, as a tz-aware UTC datetime."""
    micros, rest = divmod(value * 1_000_000, per_second)
    if rest:
        raise ValueError(f"{value} (1/{per_second} s) has sub-microsecond precision")
    try:
        return EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        raise ValueError(f"{value} (1/{per_second} s since the epoch) is outside the datetime range") from None


def parse_iso_utc(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"unparsable time {brief(text)}") from None
    if moment.tzinfo is None:
        raise ValueError(f"time {brief(text)} has no UTC offset")
    return moment.astimezone(timezone.utc)


def require_aware(value: datetime) -> datetime:
    """A datetime that knows its zone; a naive one is refused, never guessed."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: every time must be tz-aware UTC")
    return value


def to_epoch_ms(value: datetime) -> int:
    """Milliseconds since the epoch of a tz-aware datetime (exact for millisecond times)."""
    delta = require_aware(value) - EPOCH
    return (delta.days * 86_400_000_000 + delta.seconds * 1_000_000 + delta.microseconds) // 1000
