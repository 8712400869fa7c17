"""The chart renderer without a database: Grafana's result conversion, candles drawn the right way
up, and deterministic PNG bytes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from binance_cdc.serve import charts
from binance_cdc.serve import dashboard as dash
from binance_cdc.serve.grafana_sql import TimeRange

UTC = timezone.utc
START = datetime(2026, 11, 30, 0, tzinfo=UTC)
RANGE = TimeRange(START, START + timedelta(hours=4))
QUERIES = {q.panel_id: q for q in dash.panel_queries(dash.load_dashboard())}


def epoch(hour: int) -> Decimal:
    return Decimal(int((START + timedelta(hours=hour)).timestamp()))


CANDLES = pd.DataFrame({  # as Postgres 15 returns it: time in numeric epoch seconds, NUMERIC as Decimal
    "time": [epoch(0), epoch(1), epoch(2)],
    "open": [Decimal("100.00"), Decimal("110.00"), Decimal("104.50")],
    "high": [Decimal("112.00"), Decimal("111.00"), Decimal("104.50")],
    "low": [Decimal("99.00"), Decimal("101.00"), Decimal("104.50")],
    "close": [Decimal("110.00"), Decimal("102.00"), Decimal("104.50")],
    "volume": [Decimal("12.5"), Decimal("7.25"), Decimal("0")],
})


def chart(panel_id: int, frame: pd.DataFrame) -> charts.Chart:
    q = QUERIES[panel_id]
    return charts.Chart(q, q.title, charts.to_grafana_frame(frame), RANGE, q.raw_sql)


def test_numeric_epoch_time_becomes_utc_and_decimals_become_floats():
    frame = charts.to_grafana_frame(CANDLES)
    assert list(frame["time"]) == [pd.Timestamp(START + timedelta(hours=h)) for h in range(3)]
    assert str(frame["time"].dt.tz) == "UTC"
    assert frame["open"].dtype == np.float64 and frame["open"].iloc[0] == 100.0


def test_timestamptz_time_is_kept_in_utc():
    local = datetime(2026, 11, 30, 2, tzinfo=timezone(timedelta(hours=2)))
    frame = charts.to_grafana_frame(pd.DataFrame({"time": [local], "v": [1]}))
    assert frame["time"].iloc[0] == pd.Timestamp("2026-11-30T00:00:00Z")


def test_candles_are_the_right_way_up():
    fig = Figure()
    charts._draw_candles(fig, chart(3, CANDLES))
    price_ax = fig.axes[0]
    bodies = price_ax.patches[: len(CANDLES)]
    # body from min(open, close) to max(open, close); green when close >= open, red otherwise
    assert [round(b.get_y(), 6) for b in bodies] == [100.0, 102.0, 104.5]
    assert [round(b.get_height(), 6) for b in bodies[:2]] == [10.0, 8.0]
    assert bodies[2].get_height() > 0  # a doji still shows a line
    assert [to_hex(b.get_facecolor()) for b in bodies] == [charts.UP, charts.DOWN, charts.UP]
    wicks = price_ax.collections[0].get_segments()  # one vertical line per candle, low to high
    assert [(s[0][1], s[1][1]) for s in wicks] == [(99.0, 112.0), (101.0, 111.0), (104.5, 104.5)]
    assert price_ax.get_ylabel() == "price (USDT)"
    assert "UTC" in fig.axes[1].get_xlabel()


def test_time_axes_say_utc():
    frame = pd.DataFrame({"time": [epoch(0), epoch(1)], "volume": [Decimal(3), Decimal(4)]})
    fig = Figure()
    charts._draw_timeseries(fig, chart(2, frame))
    assert fig.axes[0].get_xlabel().startswith("time (UTC)")
    assert fig.axes[0].get_ylabel()


def test_bar_chart_uses_the_string_column_as_axis():
    frame = pd.DataFrame({"symbol": ["XRPUSDT", "BTCUSDT"], "trades": [300, 200]})
    fig = Figure()
    charts._draw_barchart(fig, chart(1, frame))
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["BTCUSDT", "XRPUSDT"]  # first row drawn on top
    assert fig.axes[0].get_xlabel() == QUERIES[1].custom["axisLabel"] and fig.axes[0].get_ylabel() == "symbol"


def test_log_scale_and_bars_follow_the_panel_config():
    fig = Figure()
    frame = pd.DataFrame({"symbol": ["DOGEUSDT", "BTCUSDT"], "bids": [27000.5, 2.1], "asks": [31000.0, 1.9]})
    charts._draw_barchart(fig, chart(4, frame))
    assert fig.axes[0].get_xscale() == "log"
    fig = Figure()
    charts._draw_timeseries(fig, chart(2, pd.DataFrame({"time": [epoch(0), epoch(1)], "volume": [3, 4]})))
    bars = fig.axes[0].patches
    assert len(bars) == 2 and abs(bars[0].get_width() - 0.85 / 24) < 1e-9  # 85 % of an hour, in days


@pytest.mark.parametrize("panel_id, frame", [
    (3, CANDLES),
    (1, pd.DataFrame({"symbol": ["XRPUSDT", "BTCUSDT"], "trades": [3, 2]})),
    (4, pd.DataFrame({"symbol": ["DOGEUSDT", "BTCUSDT"], "bids": [Decimal("27000.5"), Decimal("2.1")],
                      "asks": [Decimal("31000"), Decimal("1.9")]})),
    (5, pd.DataFrame({"symbol": ["BTCUSDT"], "price": [Decimal("96250.01")], "24h change": [Decimal("1.5")],
                      "observed at": [pd.Timestamp("2026-11-30T00:00:00Z")]})),
    (6, pd.DataFrame({"time": [epoch(0), epoch(1)], "exchange -> Postgres": [Decimal("30.5"), Decimal("28")]})),
    (2, pd.DataFrame({"time": [], "volume": []})),
])
def test_png_bytes_are_deterministic(panel_id, frame):
    first = charts.render_png(chart(panel_id, frame), note="unit test")
    second = charts.render_png(chart(panel_id, frame), note="unit test")
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    assert first == second
    assert b"Software" not in first and b"matplotlib" not in first.lower()


def test_different_data_gives_different_pictures():
    other = CANDLES.assign(close=[Decimal("105"), Decimal("102"), Decimal("104.5")])
    assert charts.render_png(chart(3, CANDLES)) != charts.render_png(chart(3, other))


def test_default_time_range_is_the_24h_before_the_next_full_hour():
    tr = charts.default_time_range(datetime(2026, 11, 30, 17, 59, 50, tzinfo=UTC))
    assert (tr.start, tr.end) == (datetime(2026, 11, 29, 18, tzinfo=UTC), datetime(2026, 11, 30, 18, tzinfo=UTC))


def test_file_names_are_stable():
    assert charts.file_name(chart(3, CANDLES)) == "03_hourly_candles_candle_symbol.png"
