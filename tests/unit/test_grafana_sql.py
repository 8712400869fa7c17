"""Grafana's Postgres SQL expansion, rule by rule (binance_cdc.serve.grafana_sql).

Expected strings are what Grafana's Go code (macros.go, sqleng, gtime) and its frontend templateSrv
produce for the same input; each trap of the reference file has its own test.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from binance_cdc.serve.grafana_sql import (
    MacroError, TemplateVariable, TimeRange, calculate_interval, expand, format_interval, go_float,
    interpolate_globals, interpolate_macros, parse_interval, rfc3339nano, round_interval, substitute_variables,
)

UTC = timezone.utc
RANGE = TimeRange(datetime(2018, 4, 12, 18, 0, tzinfo=UTC), datetime(2018, 4, 12, 19, 0, tzinfo=UTC))
F, T = "'2018-04-12T18:00:00Z'", "'2018-04-12T19:00:00Z'"


# --- formatting --------------------------------------------------------------------------------------


@pytest.mark.parametrize("seconds, text", [
    (86400, "86400"),            # 1d
    (3600, "3600"),
    (604800, "604800"),          # 1w: still below one million
    (999999, "999999"),
    (1_000_000, "1e+06"),        # e-notation from one million seconds (Go %v = %g shortest)
    (1_036_800, "1.0368e+06"),   # 12d
    (2_592_000, "2.592e+06"),    # 30d
    (0.02, "0.02"),              # 20ms
    (0.0001, "0.0001"),
    (0.00001, "1e-05"),          # below 1e-4: e-notation with a two-digit exponent
    (1.5, "1.5"),
    (90, "90"),
])
def test_go_float_matches_go_percent_v(seconds, text):
    assert go_float(seconds) == text


@pytest.mark.parametrize("moment, text", [
    (datetime(2018, 4, 12, 18, 0, tzinfo=UTC), "2018-04-12T18:00:00Z"),
    (datetime(2018, 4, 12, 18, 0, 0, 123000, tzinfo=UTC), "2018-04-12T18:00:00.123Z"),
    (datetime(2018, 4, 12, 18, 0, 0, 500000, tzinfo=UTC), "2018-04-12T18:00:00.5Z"),  # trailing zeros dropped
    (datetime(2018, 4, 12, 20, 0, tzinfo=timezone(timedelta(hours=2))), "2018-04-12T18:00:00Z"),  # in UTC
])
def test_time_range_ends_are_rfc3339nano_in_utc(moment, text):
    assert rfc3339nano(moment) == text


def test_time_range_needs_timezones():
    with pytest.raises(ValueError):
        TimeRange(datetime(2018, 4, 12), datetime(2018, 4, 13))


# --- intervals ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("1h", timedelta(hours=1)), ("30m", timedelta(minutes=30)), ("90s", timedelta(seconds=90)),
    ("20ms", timedelta(milliseconds=20)), ("1h30m", timedelta(minutes=90)), ("1.5h", timedelta(minutes=90)),
    ("1d", timedelta(days=1)), ("12d", timedelta(days=12)), ("2w", timedelta(days=14)),
])
def test_parse_interval(text, expected):
    assert parse_interval(text) == expected


def test_parse_interval_months_follow_the_calendar_like_go_adddate():
    assert parse_interval("1M", datetime(2020, 1, 31, tzinfo=UTC)) == timedelta(days=31)  # Jan 31 -> Mar 2
    assert parse_interval("1y", datetime(2021, 3, 1, tzinfo=UTC)) == timedelta(days=365)


@pytest.mark.parametrize("text", ["1", "h", "1x", "1 h", ""])
def test_parse_interval_rejects_what_go_rejects(text):
    with pytest.raises(MacroError):
        parse_interval(text)


@pytest.mark.parametrize("interval, text", [
    (timedelta(hours=1), "1h"), (timedelta(minutes=30), "30m"), (timedelta(seconds=90), "1m"),
    (timedelta(minutes=150), "2h"), (timedelta(days=400), "1y"), (timedelta(days=2), "2d"),
    (timedelta(milliseconds=1500), "1s"), (timedelta(milliseconds=20), "20ms"), (timedelta(microseconds=5), "1ms"),
])
def test_format_interval_takes_the_largest_whole_unit(interval, text):
    assert format_interval(interval) == text


def test_calculate_interval_rounds_and_respects_the_minimum():
    day = TimeRange(datetime(2020, 1, 1, tzinfo=UTC), datetime(2020, 1, 2, tzinfo=UTC))
    assert calculate_interval(day, 1000) == timedelta(minutes=1)            # 86.4 s -> 1m
    assert calculate_interval(day, 100) == timedelta(minutes=15)             # 864 s -> 15m
    assert calculate_interval(day, 100_000, timedelta(seconds=1)) == timedelta(seconds=1)
    assert calculate_interval(day, 100_000) == timedelta(minutes=1)         # min interval wins
    # rounded first (1.728 s -> 2 s), then raised to the minimum, which is not rounded
    assert calculate_interval(day, 50_000, timedelta(seconds=50)) == timedelta(seconds=50)


@pytest.mark.parametrize("ms, rounded", [(5, 1), (12, 10), (86_400, 60_000), (432_000, 300_000),
                                         (1_000_000_000, 604_800_000), (3_000_000_000, 2_592_000_000),
                                         (4_000_000_000, 31_536_000_000)])
def test_round_interval_table(ms, rounded):
    assert round_interval(timedelta(milliseconds=ms)) == timedelta(milliseconds=rounded)


# --- step 1: template variables ----------------------------------------------------------------------


def test_single_value_is_inserted_raw_with_quotes_doubled():
    sql = "SELECT 1 WHERE symbol = '$symbol'"
    assert substitute_variables(sql, {"symbol": "ETHUSDT"}) == "SELECT 1 WHERE symbol = 'ETHUSDT'"
    assert substitute_variables(sql, {"symbol": "O'Brien"}) == "SELECT 1 WHERE symbol = 'O''Brien'"


def test_multi_value_becomes_quoted_literals_joined_by_commas():
    sql = "WHERE symbol IN ($symbols)"
    assert (substitute_variables(sql, {"symbols": TemplateVariable(["BTCUSDT", "O'X"], multi=True)})
            == "WHERE symbol IN ('BTCUSDT','O''X')")
    # one selected value of a multi variable is still quoted
    assert substitute_variables(sql, {"symbols": TemplateVariable("BTCUSDT", multi=True)}) == \
        "WHERE symbol IN ('BTCUSDT')"


def test_all_three_variable_syntaxes_and_word_boundaries():
    variables = {"s": "serving", "symbol": "BTCUSDT"}
    assert substitute_variables("${s}.klines [[symbol]] $s.x", variables) == "serving.klines BTCUSDT serving.x"
    # `$symbols` is another (unknown) name: not a prefix match of $symbol
    assert substitute_variables("$symbols", variables) == "$symbols"


def test_unknown_names_and_macros_are_left_for_the_backend():
    sql = "SELECT $__timeGroupAlias(t,'$__interval') WHERE $__timeFilter(t) AND x = $nope"
    assert substitute_variables(sql, {"symbol": "X"}) == sql


def test_variable_formats_are_refused_rather_than_guessed():
    with pytest.raises(MacroError):
        substitute_variables("${symbol:csv}", {"symbol": "X"})


# --- step 2: global substitutions --------------------------------------------------------------------


def test_globals_interval_ms_before_interval_and_unix_epochs():
    sql = "$__interval_ms $__interval $__unixEpochFrom() $__unixEpochTo()"
    out = interpolate_globals(sql, RANGE, timedelta(seconds=90))
    assert out == "90000 1m 1523556000 1523559600"


# --- step 3: macros ----------------------------------------------------------------------------------


@pytest.mark.parametrize("sql, expected", [
    ("$__time(t)", 't AS "time"'),
    ("$__timeEpoch(t)", 'extract(epoch from t) as "time"'),
    ("$__timeFilter(t)", f"t BETWEEN {F} AND {T}"),
    ("$__timeFrom()", F),
    ("$__timeTo()", T),
    ("$__timeGroup(t,'1h')", "floor(extract(epoch from t)/3600)*3600"),
    ("$__timeGroup(t, '1h', NULL)", "floor(extract(epoch from t)/3600)*3600"),
    ("$__timeGroupAlias(t,'1h')", 'floor(extract(epoch from t)/3600)*3600 AS "time"'),
    ("$__timeGroup(t,1d)", "floor(extract(epoch from t)/86400)*86400"),
    ("$__timeGroup(t,'12d')", "floor(extract(epoch from t)/1.0368e+06)*1.0368e+06"),
    ("$__timeGroup(t,'20ms')", "floor(extract(epoch from t)/0.02)*0.02"),
    ("$__unixEpochFilter(ts)", "ts >= 1523556000 AND ts <= 1523559600"),
    ("$__unixEpochGroupAlias(ts,'5m')", 'floor((ts)/300)*300 AS "time"'),
    ("$__unixEpochNanoFrom()", "1523556000000000000"),
])
def test_each_macro(sql, expected):
    assert interpolate_macros(sql, RANGE) == expected


def test_arguments_are_split_on_commas_and_trimmed_of_spaces():
    assert interpolate_macros("$__timeFilter(  trade_time  )", RANGE) == f"trade_time BETWEEN {F} AND {T}"


def test_trap_an_argument_cannot_hold_a_parenthesis():
    # The pattern stops at the first ')': the column is cut and the rest is left behind.
    out = interpolate_macros("$__timeFilter(date_trunc('hour', t))", RANGE)
    assert out == f"date_trunc('hour' BETWEEN {F} AND {T})"


def test_trap_an_argument_cannot_hold_a_comma():
    out = interpolate_macros("$__timeFilter(coalesce(a, b))", RANGE)
    assert out.startswith("coalesce(a BETWEEN")  # only the first argument is used


def test_trap_time_group_followed_by_a_comma_aliases_every_identical_occurrence():
    sql = "SELECT $__timeGroup(t,'1h'), avg(x) FROM m GROUP BY $__timeGroup(t,'1h'), symbol"
    out = interpolate_macros(sql, RANGE)
    group = 'floor(extract(epoch from t)/3600)*3600 AS "time"'
    assert out == f"SELECT {group}, avg(x) FROM m GROUP BY {group}, symbol"  # a syntax error in Postgres


def test_trap_only_the_first_occurrence_decides():
    sql = "SELECT $__timeGroup(t,'1h') AS bucket, x FROM m GROUP BY $__timeGroup(t,'1h'), x"
    out = interpolate_macros(sql, RANGE)
    assert 'AS "time"' not in out  # the first occurrence is followed by ' ', so neither gets the alias


def test_the_safe_pattern_alias_in_select_and_group_by_position():
    sql = "SELECT $__timeGroupAlias(t,'1h'), symbol, avg(x) FROM m WHERE $__timeFilter(t) GROUP BY 1, 2 ORDER BY 1"
    out = interpolate_macros(sql, RANGE)
    assert out == ('SELECT floor(extract(epoch from t)/3600)*3600 AS "time", symbol, avg(x) FROM m '
                   f"WHERE t BETWEEN {F} AND {T} GROUP BY 1, 2 ORDER BY 1")


@pytest.mark.parametrize("sql", ["$__timeGroup(t)", "$__timeGroup(t,'1x')", "$__nope(t)", "$foo(t)",
                                 "$__timeGroup(t,'1h',zero)"])
def test_errors_grafana_would_report(sql):
    with pytest.raises(MacroError):
        interpolate_macros(sql, RANGE)


def test_expand_runs_variables_then_globals_then_macros():
    sql = ("SELECT $__timeGroupAlias(trade_time,'$__interval'), count(*) FROM $schema.recent_trades "
           "WHERE $__timeFilter(trade_time) AND symbol = '$symbol' GROUP BY 1 ORDER BY 1")
    out = expand(sql, RANGE, {"schema": "serving", "symbol": "ETHUSDT"}, timedelta(minutes=5))
    assert out == ('SELECT floor(extract(epoch from trade_time)/300)*300 AS "time", count(*) '
                   f"FROM serving.recent_trades WHERE trade_time BETWEEN {F} AND {T} "
                   "AND symbol = 'ETHUSDT' GROUP BY 1 ORDER BY 1")
