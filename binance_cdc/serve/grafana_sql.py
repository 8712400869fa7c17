"""What Grafana does to a Postgres panel's SQL before the server sees it, reproduced in Python.

A Grafana server cannot be installed here, so the dashboard is proven by running its SQL the way Grafana
would. This module is that way, rule for rule from Grafana's source (frontend `templateSrv` + the SQL
data source's `interpolateVariable`; backend `sqleng.Interpolate` and the Postgres `macros.go`):

1. Template variables (frontend): `$name`, `${name}`, `[[name]]`. A single value is inserted raw with
   `'` doubled (write `'$symbol'`); a multi-value (or include-all) variable becomes quoted literals
   joined by commas (write `IN ($symbols)`). Unknown names are left as they are (the macros below).
2. Global substitutions (backend, in this order, plain text replacement): `$__interval_ms` -> whole
   milliseconds; `$__interval` -> the largest whole unit (`90s` -> `1m`); `$__unixEpochFrom()` /
   `$__unixEpochTo()` -> integer Unix seconds.
3. Macros: every match of `\\$([_a-zA-Z0-9]+)\\(([^\\)]*)\\)`, arguments split on `,` and trimmed of
   spaces (so an argument holds neither `)` nor `,`). Unknown names are an error. Traps kept on purpose:
   the number in `$__timeGroup` is Go's `%v` of a float64 (`1.0368e+06` for 12 days), and when the
   FIRST occurrence of an identical `$__timeGroup(...)` text is followed by `,`, every occurrence gets
   ` AS "time"` (so `GROUP BY $__timeGroup(t,'1h'), symbol` is a syntax error in Postgres).

Times F and T are the panel range in UTC, in Go's RFC3339Nano (fraction only when non-zero, trailing
zeros dropped): `'2018-04-12T18:00:00Z'`, `'2018-04-12T18:00:00.5Z'`.

On Postgres 14+ `extract(epoch ...)` is numeric: a `$__timeGroupAlias` column arrives as epoch seconds
and Grafana converts it to a time (`epoch_seconds_to_utc` does the same for other readers).
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Mapping, Sequence

__all__ = [
    "MacroError", "TemplateVariable", "VARIABLE_PATTERN", "TimeRange", "expand", "substitute_variables",
    "interpolate_globals", "interpolate_macros", "go_float", "parse_interval", "format_interval", "round_interval",
    "calculate_interval", "rfc3339nano", "epoch_seconds_to_utc",
]


class MacroError(ValueError):
    """A macro Grafana would refuse (unknown name, missing argument, bad interval)."""


@dataclass(frozen=True)
class TimeRange:
    """The panel's time range; both ends are tz-aware (converted to UTC when formatted)."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("TimeRange needs tz-aware datetimes (Grafana formats them in UTC)")
        if self.end < self.start:
            raise ValueError("TimeRange ends before it starts")


@dataclass(frozen=True)
class TemplateVariable:
    """A dashboard variable's current value; `multi` also stands for include-all."""

    value: str | Sequence[str]
    multi: bool = False


# --- Go formatting -----------------------------------------------------------------------------------


def go_float(value: float) -> str:
    """Go's `fmt.Sprintf("%v", float64)` = strconv.FormatFloat(f, 'g', -1, 64): the shortest digits that
    round-trip, in %e form when the decimal exponent is < -4 or >= 6 (`1e+06`, `1.0368e+06`, `0.02`)."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if str(value).startswith("-") else "0"
    sign, digits_t, exponent = Decimal(repr(value)).normalize().as_tuple()
    digits = "".join(map(str, digits_t))
    point = len(digits) + exponent  # position of the decimal point relative to the digits
    exp10 = point - 1
    prefix = "-" if sign else ""
    if exp10 < -4 or exp10 >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{prefix}{mantissa}e{'-' if exp10 < 0 else '+'}{abs(exp10):02d}"
    if point <= 0:
        return f"{prefix}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return f"{prefix}{digits}{'0' * (point - len(digits))}"
    return f"{prefix}{digits[:point]}.{digits[point:]}"


def rfc3339nano(moment: datetime) -> str:
    """Go's `t.UTC().Format(time.RFC3339Nano)`: fraction only when non-zero, trailing zeros dropped."""
    utc = moment.astimezone(timezone.utc)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += ("." + f"{utc.microsecond:06d}").rstrip("0")
    return text + "Z"


def _unix(moment: datetime) -> int:
    """Go's `t.Unix()`: whole seconds, rounded towards minus infinity."""
    return calendar.timegm(moment.astimezone(timezone.utc).timetuple())


# --- intervals (grafana-plugin-sdk-go gtime) --------------------------------------------------------

_GO_DURATION_UNITS = {
    "ns": Decimal("1e-9"), "us": Decimal("1e-6"), "\u00b5s": Decimal("1e-6"), "\u03bcs": Decimal("1e-6"),
    "ms": Decimal("1e-3"), "s": Decimal(1), "m": Decimal(60), "h": Decimal(3600),
}
_GO_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")
_DATE_UNIT = re.compile(r"^(\d+)([dwMy])$")


def _parse_go_duration(text: str) -> timedelta:
    """Go's time.ParseDuration (`1h30m`, `1.5h`, `20ms`); a bare number other than 0 is an error."""
    body, sign = text, 1
    if body[:1] in "+-" and body:
        sign, body = (-1 if body[0] == "-" else 1), body[1:]
    if body == "0":
        return timedelta(0)
    pos, total = 0, Decimal(0)
    while pos < len(body):
        match = _GO_DURATION_PART.match(body, pos)
        if not match:
            raise MacroError(f"error parsing interval {text}")
        total += Decimal(match.group(1)) * _GO_DURATION_UNITS[match.group(2)]
        pos = match.end()
    if not body:
        raise MacroError(f"error parsing interval {text}")
    return timedelta(seconds=float(sign * total))


def parse_interval(text: str, now: datetime | None = None) -> timedelta:
    """gtime.ParseInterval: `<n>d|w|M|y` counted on the calendar from now (UTC), else a Go duration."""
    match = _DATE_UNIT.match(text)
    if not match:
        return _parse_go_duration(text)
    n, unit = int(match.group(1)), match.group(2)
    if unit == "d":
        return timedelta(days=n)
    if unit == "w":
        return timedelta(days=7 * n)
    now = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    months = n if unit == "M" else 12 * n
    year, month0 = divmod(now.month - 1 + months, 12)
    year += now.year
    # Go's AddDate normalises an overflowing day (Jan 31 + 1 month = Mar 3); reproduce via day offset.
    first = now.replace(year=year, month=month0 + 1, day=1)
    return first + timedelta(days=now.day - 1) - now


_YEAR = timedelta(days=365)
_UNITS_DESC = ((_YEAR, "y"), (timedelta(days=1), "d"), (timedelta(hours=1), "h"), (timedelta(minutes=1), "m"),
               (timedelta(seconds=1), "s"), (timedelta(milliseconds=1), "ms"))


def format_interval(interval: timedelta) -> str:
    """gtime.FormatInterval: the largest whole unit, integer division (`90s` -> `1m`, below 1 ms -> `1ms`)."""
    for unit, suffix in _UNITS_DESC:
        if interval >= unit:
            return f"{interval // unit}{suffix}"
    return "1ms"


# Grafana's rangeutil.roundInterval (below ms -> ms), used to pick $__interval from range / max points.
_ROUND_STEPS = (
    (10, 1), (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000), (3500, 2000),
    (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000), (45000, 30000), (90000, 60000),
    (210000, 120000), (450000, 300000), (750000, 600000), (1050000, 900000), (1500000, 1200000),
    (2700000, 1800000), (5400000, 3600000), (9000000, 7200000), (16200000, 10800000),
    (32400000, 21600000), (86400000, 43200000), (604800000, 86400000), (1814400000, 604800000),
    (3628800000, 2592000000),
)


def round_interval(interval: timedelta) -> timedelta:
    ms = interval / timedelta(milliseconds=1)
    for below, value in _ROUND_STEPS:
        if ms < below:
            return timedelta(milliseconds=value)
    return timedelta(milliseconds=31536000000)


def calculate_interval(time_range: TimeRange, max_data_points: int = 1000,
                       min_interval: timedelta = timedelta(minutes=1)) -> timedelta:
    """The panel's $__interval as Grafana's rangeutil.calculateInterval computes it: range / max data
    points rounded to a nice value, then raised to the data source's minimum as it is (jsonData.timeInterval,
    1m in our provisioning; the minimum itself is not rounded)."""
    return max(round_interval((time_range.end - time_range.start) / max_data_points), min_interval)


# --- step 1: template variables ---------------------------------------------------------------------

# Grafana's templateSrv variable pattern: $name | [[name]] / [[name:fmt]] | ${name} / ${name.path:fmt}
VARIABLE_PATTERN = re.compile(r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?\}")


def _quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _sql_value(variable: TemplateVariable) -> str:
    """The SQL data sources' interpolateVariable."""
    value = variable.value
    if isinstance(value, str):
        return _quote_literal(value) if variable.multi else value.replace("'", "''")
    return ",".join(_quote_literal(v) for v in value)


def substitute_variables(sql: str, variables: Mapping[str, TemplateVariable | str]) -> str:
    """Replace dashboard variables as Grafana's frontend does before the query leaves the browser.
    Only the default format is supported; a `${name:format}` raises (write plain `$name`)."""

    def replace(match: re.Match) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        fmt = match.group(3) or match.group(6)
        if name not in variables:
            return match.group(0)  # not a variable (a macro, $__interval...): left for the backend
        if fmt:
            raise MacroError(f"variable format {fmt!r} of ${name} is not reproduced here; use plain ${name}")
        variable = variables[name]
        if isinstance(variable, str):
            variable = TemplateVariable(variable)
        return _sql_value(variable)

    return VARIABLE_PATTERN.sub(replace, sql)


# --- step 2: sqleng.Interpolate ---------------------------------------------------------------------


def interpolate_globals(sql: str, time_range: TimeRange, interval: timedelta) -> str:
    sql = sql.replace("$__interval_ms", str(interval // timedelta(milliseconds=1)))
    sql = sql.replace("$__interval", format_interval(interval))
    sql = sql.replace("$__unixEpochFrom()", str(_unix(time_range.start)))
    sql = sql.replace("$__unixEpochTo()", str(_unix(time_range.end)))
    return sql


# --- step 3: the Postgres macro engine --------------------------------------------------------------

_MACRO = re.compile(r"\$([_a-zA-Z0-9]+)\(([^\)]*)\)")
_FILL_VALUES = re.compile(r"^(NULL|previous|-?\d+(\.\d+)?)$")


def _evaluate(name: str, args: list[str], time_range: TimeRange) -> str:
    frm, to = rfc3339nano(time_range.start), rfc3339nano(time_range.end)
    if name in ("__time", "__timeEpoch", "__timeFilter", "__unixEpochFilter", "__unixEpochNanoFilter") \
            and len(args) == 0:
        raise MacroError(f"missing time column argument for macro {name}")
    if name == "__time":
        return f'{args[0]} AS "time"'
    if name == "__timeEpoch":
        return f'extract(epoch from {args[0]}) as "time"'
    if name == "__timeFilter":
        return f"{args[0]} BETWEEN '{frm}' AND '{to}'"
    if name == "__timeFrom":
        return f"'{frm}'"
    if name == "__timeTo":
        return f"'{to}'"
    if name in ("__timeGroup", "__unixEpochGroup"):
        if len(args) < 2:
            raise MacroError(f"macro {name} needs time column and interval and optional fill value")
        try:
            seconds = parse_interval(args[1].strip("'")).total_seconds()
        except MacroError:
            raise MacroError(f"error parsing interval {args[1]}") from None
        if len(args) == 3 and not _FILL_VALUES.match(args[2]):
            raise MacroError(f"error parsing fill value {args[2]}")
        s = go_float(seconds)
        if name == "__timeGroup":
            return f"floor(extract(epoch from {args[0]})/{s})*{s}"
        return f"floor(({args[0]})/{s})*{s}"
    if name in ("__timeGroupAlias", "__unixEpochGroupAlias"):
        return _evaluate(name[: -len("Alias")], args, time_range) + ' AS "time"'
    if name == "__unixEpochFilter":
        return f"{args[0]} >= {_unix(time_range.start)} AND {args[0]} <= {_unix(time_range.end)}"
    if name == "__unixEpochNanoFilter":
        return (f"{args[0]} >= {_unix_nano(time_range.start)} AND "
                f"{args[0]} <= {_unix_nano(time_range.end)}")
    if name == "__unixEpochNanoFrom":
        return str(_unix_nano(time_range.start))
    if name == "__unixEpochNanoTo":
        return str(_unix_nano(time_range.end))
    raise MacroError(f'unknown macro "{name}"')


def _unix_nano(moment: datetime) -> int:
    utc = moment.astimezone(timezone.utc)
    return _unix(utc) * 1_000_000_000 + utc.microsecond * 1000


def interpolate_macros(sql: str, time_range: TimeRange) -> str:
    """The Postgres macro engine: each `$name(args)` replaced, left to right, in one pass."""
    out: list[str] = []
    last = 0
    for match in _MACRO.finditer(sql):
        whole, name, raw_args = match.group(0), match.group(1), match.group(2)
        if name == "__timeGroup":
            # Grafana looks at the FIRST occurrence of this exact text in the whole query.
            index = sql.find(whole) + len(whole)
            if index < len(sql) and sql[index] == ",":
                name = "__timeGroupAlias"
        args = [a.strip(" ") for a in raw_args.split(",")]
        out.append(sql[last:match.start()])
        out.append(_evaluate(name, args, time_range))
        last = match.end()
    out.append(sql[last:])
    return "".join(out)


def expand(sql: str, time_range: TimeRange, variables: Mapping[str, TemplateVariable | str] | None = None,
           interval: timedelta | None = None) -> str:
    """A panel's rawSql as the Postgres server receives it from Grafana."""
    if interval is None:
        interval = calculate_interval(time_range)
    sql = substitute_variables(sql, variables or {})
    sql = interpolate_globals(sql, time_range, interval)
    return interpolate_macros(sql, time_range)


def epoch_seconds_to_utc(value) -> datetime:
    """What Grafana does with a numeric `time` column (epoch seconds on Postgres 14+)."""
    return datetime.fromtimestamp(float(value), tz=timezone.utc)
