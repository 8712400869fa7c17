"""Every dashboard panel's SQL, expanded as Grafana would, run as the Grafana role against seeded rows.

The rows live in a throwaway copy of the serving schema (sql/05_serving.sql applied with
-v serving_schema=serving_test_<random>, dropped afterwards), so the bridge writing `serving` is never
touched. The dashboard names its tables `$serving_schema.<table>` (a constant dashboard variable);
the tests give that variable the throwaway name, exactly as Grafana substitutes it.

Also: the provisioned data source, rendered from .env with Grafana's rules, reaches the serving tables
with those credentials; the Grafana role reads nothing of schema binance and writes nothing; the chart
renderer draws every panel from the same SQL, byte-identically twice.
Set DASHBOARD_CHARTS_OUT=docs/charts to also write the pictures there (the README's, simulated data).
"""

from __future__ import annotations

import os
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import psycopg2
import pytest
from dotenv import dotenv_values
from psycopg2 import errors, sql

import dashboard_seed as seeding
from binance_cdc import postgres_conn
from binance_cdc.serve import charts
from binance_cdc.serve import dashboard as dash
from binance_cdc.serve.grafana_provisioning import datasource_login, load_provisioning
from binance_cdc.serve.grafana_sql import TimeRange, calculate_interval, epoch_seconds_to_utc, expand
from binance_cdc.settings import PROJECT_ROOT
from stack import postgres

UTC = timezone.utc
RANGE = TimeRange(seeding.SEED_START, seeding.SEED_END)
MODEL = dash.load_dashboard()
QUERIES = {q.panel_id: q for q in dash.panel_queries(MODEL)}
SERVING_TABLES = ("recent_trades", "order_book", "klines", "daily_ticker", "latest_prices", "bridge_runs")


@pytest.fixture(scope="module")
def seeded(settings):
    postgres.wait_ready(settings, timeout=60)
    with seeding.throwaway_serving_schema(settings) as schema:
        conn = postgres_conn.connect(settings.serving, settings.bridge_login, "test_dashboard_seed")
        try:
            data = seeding.seed(conn, schema)
        finally:
            conn.close()
        yield data


@pytest.fixture
def grafana(settings):
    conn = postgres_conn.connect(settings.serving, settings.grafana_login, "test_dashboard_grafana")
    try:
        yield conn
    finally:
        conn.rollback()
        conn.close()


def run_panel(conn, seeded, panel_id: int, **variables):
    query = QUERIES[panel_id]
    values = dash.default_variables(MODEL, seeded.schema)
    values.update({k: dash.TemplateVariable(v) for k, v in variables.items()})
    expanded = expand(query.raw_sql, RANGE, values, calculate_interval(RANGE, query.max_data_points or 1000))
    with conn.cursor() as cur:
        cur.execute(expanded)
        columns = [d.name for d in cur.description]
        rows = cur.fetchall()
    conn.rollback()
    return columns, rows


def in_range(moment: datetime) -> bool:
    return RANGE.start <= moment <= RANGE.end  # $__timeFilter is BETWEEN: inclusive


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


# --- shapes per panel type ---------------------------------------------------------------------------


@pytest.mark.parametrize("panel_id", sorted(QUERIES))
def test_panel_returns_the_shape_its_type_needs(grafana, seeded, panel_id):
    query = QUERIES[panel_id]
    columns, rows = run_panel(grafana, seeded, panel_id)
    assert rows, f"panel {panel_id} returned no rows"
    if query.fmt == "time_series":
        assert "time" in columns
        t = columns.index("time")
        # Postgres 15: extract(epoch ...) is numeric; Grafana turns epoch seconds into times.
        assert all(isinstance(r[t], Decimal) for r in rows)
        times = [epoch_seconds_to_utc(r[t]) for r in rows]
        assert times == sorted(times) and len(set(times)) == len(times), "time must be sorted (one series)"
        assert all(RANGE.start - timedelta(hours=1) <= x <= RANGE.end for x in times)
        for i, name in enumerate(columns):
            if i != t:
                assert all(isinstance(r[i], (Decimal, int, float)) for r in rows), name
    if query.panel_type == "candlestick":
        assert {"open", "high", "low", "close", "volume"} <= set(columns)
        o, h, lo, c = (columns.index(k) for k in ("open", "high", "low", "close"))
        for r in rows:
            assert r[lo] <= min(r[o], r[c]) and max(r[o], r[c]) <= r[h]
    if query.panel_type == "barchart":
        assert all(isinstance(r[0], str) for r in rows), "a string axis"
        assert all(isinstance(v, (Decimal, int)) for r in rows for v in r[1:])


# --- values, exactly ---------------------------------------------------------------------------------


def test_most_traded_symbols(grafana, seeded):
    latest: dict[str, tuple] = {}
    for row in seeded.tickers:
        if in_range(row[1]) and (row[0] not in latest or row[1] > latest[row[0]][1]):
            latest[row[0]] = row
    expected = sorted(((s, r[20]) for s, r in latest.items()), key=lambda x: (-x[1], x[0]))[:10]
    columns, rows = run_panel(grafana, seeded, 1)
    assert columns == ["symbol", "trades"] and rows == expected
    assert [s for s, _ in rows[:3]] == ["XRPUSDT", "AVAXUSDT", "BTCUSDT"]


@pytest.mark.parametrize("symbol", ["ETHUSDT", "SOLUSDT"])
def test_volume_by_hour_follows_the_symbol_variable(grafana, seeded, symbol):
    expected: dict[datetime, Decimal] = defaultdict(Decimal)
    for k in seeded.klines:
        if k[0] == symbol and k[1] == "30m" and in_range(k[2]):
            expected[hour_of(k[2])] += k[7]
    columns, rows = run_panel(grafana, seeded, 2, symbol=symbol)
    assert columns == ["time", "volume"]
    assert {epoch_seconds_to_utc(t): v for t, v in rows} == expected
    if symbol == "ETHUSDT":  # the original post's 13:00-14:00 spike
        assert max(expected, key=expected.get).hour == 13


def test_hourly_candles_from_30_minute_klines(grafana, seeded):
    by_hour: dict[datetime, list] = defaultdict(list)
    for k in seeded.klines:
        if k[0] == "BTCUSDT" and in_range(k[2]):
            by_hour[hour_of(k[2])].append(k)
    expected = {}
    for hour, ks in by_hour.items():
        ks.sort(key=lambda k: k[2])
        expected[hour] = (ks[0][3], max(k[4] for k in ks), min(k[5] for k in ks), ks[-1][6], sum(k[7] for k in ks))
    assert all(len(ks) == 2 for ks in by_hour.values())
    columns, rows = run_panel(grafana, seeded, 3)
    assert columns == ["time", "open", "high", "low", "close", "volume"]
    assert {epoch_seconds_to_utc(r[0]): tuple(r[1:]) for r in rows} == expected


def test_order_book_counts_the_latest_snapshot_only(grafana, seeded):
    latest = {}
    for b in seeded.book:
        if in_range(b[6]) and (b[0] not in latest or (b[6], b[1]) > latest[b[0]]):
            latest[b[0]] = (b[6], b[1])
    sums: dict[str, dict[str, Decimal]] = defaultdict(lambda: {"bid": Decimal(0), "ask": Decimal(0)})
    for b in seeded.book:
        if (b[6], b[1]) == latest[b[0]]:
            sums[b[0]][b[2]] += b[4]
    columns, rows = run_panel(grafana, seeded, 4)
    assert columns == ["symbol", "bids", "asks"]
    assert {s: (bid, ask) for s, bid, ask in rows} == {s: (v["bid"], v["ask"]) for s, v in sums.items()}
    totals = [bid + ask for _, bid, ask in rows]
    assert totals == sorted(totals, reverse=True)


def test_latest_prices_are_exact(grafana, seeded):
    change = {}
    for t in sorted(seeded.tickers, key=lambda t: t[1]):
        change[t[0]] = t[4]
    columns, rows = run_panel(grafana, seeded, 5)
    assert columns == ["symbol", "price", "24h change", "observed at"]
    assert rows == sorted((p[0], p[1], change[p[0]], p[2]) for p in seeded.prices)
    assert all(isinstance(r[1], Decimal) for r in rows)  # e.g. Decimal('0.38699'), never a float


def test_freshness_per_hop(grafana, seeded):
    query = QUERIES[6]
    step = calculate_interval(RANGE, query.max_data_points).total_seconds()
    assert step == 300
    hops: dict[float, list] = defaultdict(list)
    for t in seeded.trades:
        if in_range(t[5]):
            bucket = (t[5].timestamp() // step) * step
            hops[bucket].append(((t[11] - t[5]).total_seconds(), (t[14] - t[11]).total_seconds(),
                                 (t[15] - t[14]).total_seconds()))
    columns, rows = run_panel(grafana, seeded, 6)
    assert columns == ["time", "exchange -> Postgres", "Postgres -> Cassandra", "Cassandra -> serving"]
    assert [float(r[0]) for r in rows] == sorted(hops)
    for r in rows:
        values = hops[float(r[0])]
        for i in range(3):
            assert float(r[i + 1]) == pytest.approx(sum(v[i] for v in values) / len(values), abs=1e-6)
            assert r[i + 1] > 0


def test_symbol_variable_query_offers_the_defaults(grafana, seeded):
    variables = {v["name"]: v for v in MODEL["templating"]["list"]}
    query = variables["symbol"]["query"]
    expanded = expand(query, RANGE, {dash.SCHEMA_VARIABLE: seeded.schema})
    with grafana.cursor() as cur:
        cur.execute(expanded)
        options = [r[0] for r in cur.fetchall()]
    assert options == sorted(seeding.SYMBOLS)
    assert {variables["symbol"]["current"]["value"], variables["candle_symbol"]["current"]["value"]} <= set(options)


# --- least privilege ---------------------------------------------------------------------------------


@pytest.mark.parametrize("statement", [
    "SELECT 1 FROM binance.recent_trades LIMIT 1",
    "SELECT 1 FROM binance.latest_prices LIMIT 1",
])
def test_grafana_role_cannot_read_schema_binance(grafana, statement):
    with pytest.raises(errors.InsufficientPrivilege), grafana.cursor() as cur:
        cur.execute(statement)


def test_grafana_role_cannot_write_the_serving_tables(grafana, seeded):
    with pytest.raises(errors.InsufficientPrivilege), grafana.cursor() as cur:
        cur.execute(sql.SQL("DELETE FROM {}.latest_prices").format(sql.Identifier(seeded.schema)))
    grafana.rollback()
    with pytest.raises(errors.InsufficientPrivilege), grafana.cursor() as cur:
        cur.execute(sql.SQL("CREATE TABLE {}.x (i int)").format(sql.Identifier(seeded.schema)))


# --- provisioning ------------------------------------------------------------------------------------


def grafana_environment() -> dict[str, str]:
    """What Grafana's process sees when started with the project's variables exported (.env, with the
    real environment winning, as the project's settings do)."""
    env = {k: v for k, v in dotenv_values(PROJECT_ROOT / ".env").items() if v is not None}
    env.update(os.environ)
    return env


def test_provisioned_datasource_is_the_configured_login(settings):
    ds_yaml = dash.PROVISIONING_DIR / "datasources" / "postgres.yaml"
    login = datasource_login(load_provisioning(ds_yaml, grafana_environment()), dash.DATASOURCE_UID)
    # An unset variable renders as "" in Grafana (silently); a `$` in a password is expanded again.
    assert (login.host, login.port, login.database, login.user) == (
        settings.serving.host, settings.serving.port, settings.serving.database, settings.grafana_login.user)
    assert login.password == settings.grafana_login.password.reveal(), \
        "the password does not survive Grafana's expansion (a `$` in it?)"


def test_provisioned_datasource_reaches_the_serving_tables(settings, seeded):
    ds_yaml = dash.PROVISIONING_DIR / "datasources" / "postgres.yaml"
    login = datasource_login(load_provisioning(ds_yaml, grafana_environment()), dash.DATASOURCE_UID)
    conn = psycopg2.connect(host=login.host, port=login.port, dbname=login.database, user=login.user,
                            password=login.password, sslmode=login.sslmode, application_name="test_dashboard_ds",
                            connect_timeout=10)
    try:
        with conn.cursor() as cur:
            for schema in (settings.serving.schema, seeded.schema):
                for table in SERVING_TABLES:
                    cur.execute(sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema),
                                                                             sql.Identifier(table)))
                    assert cur.fetchone()[0] >= 0
            cur.execute(sql.SQL("SELECT count(*) FROM {}.latest_prices").format(sql.Identifier(seeded.schema)))
            assert cur.fetchone()[0] == len(seeding.SYMBOLS)
    finally:
        conn.close()


# --- the pictures ------------------------------------------------------------------------------------


def test_charts_render_every_panel_deterministically(settings, seeded, tmp_path: Path):
    from sqlalchemy import create_engine

    engine = create_engine(postgres_conn.sqlalchemy_url(settings.serving, settings.grafana_login))
    try:
        assert charts.default_time_range(charts.newest_data_time(engine, seeded.schema)) == RANGE
        note = "simulated data (tests/integration/dashboard_seed.py)"
        first = charts.render_all(engine, tmp_path / "a", seeded.schema, note=note)
        second = charts.render_all(engine, tmp_path / "b", seeded.schema, note=note)
        out = os.environ.get("DASHBOARD_CHARTS_OUT")
        if out:
            charts.render_all(engine, PROJECT_ROOT / out, seeded.schema, note=note)
    finally:
        engine.dispose()
    assert [p.name for p in first] == [
        "01_most_traded_symbols_24_h_trade_count.png", "02_volume_by_hour_ethusdt.png",
        "03_hourly_candles_btcusdt.png", "04_coins_on_the_order_book_latest_snapshot.png",
        "05_latest_prices.png", "06_pipeline_freshness_per_hop.png"]
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes(), a.name
        assert a.stat().st_size > 10_000, f"{a.name} looks empty"


def test_chart_reader_sends_the_sql_untouched(settings):
    """`%` and `:name` in panel SQL reach Postgres as written (as from Grafana), NUMERIC stays exact."""
    from sqlalchemy import create_engine

    engine = create_engine(postgres_conn.sqlalchemy_url(settings.serving, settings.grafana_login))
    try:
        frame = charts.read_sql(engine, "SELECT 'BTC%' LIKE 'BTC%' AS ok, ' :name' AS colon, 7 % 4 AS m, "
                                        "0.38699::numeric AS price")
    finally:
        engine.dispose()
    assert frame.to_dict("records") == [{"ok": True, "colon": " :name", "m": 3, "price": Decimal("0.38699")}]
