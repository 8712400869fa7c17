"""The Grafana dashboard of the serving schema, as code, and the helpers that read it back.

The committed file grafana/provisioning/dashboards/json/binance_pipeline.json is what Grafana loads and
what `binance_cdc.serve.charts` renders: the one source of truth for the panel SQL. It is generated from
`build_dashboard()` below (readable SQL, one place for the shared datasource reference);
tests/unit/test_grafana_dashboard.py fails when the two drift.

    python -m binance_cdc.serve.dashboard --write   # regenerate the JSON after editing this module
    python -m binance_cdc.serve.dashboard --check   # exit 1 when the committed JSON is stale

How the schema name reaches the SQL: every table is written `$serving_schema.<table>`, where
`serving_schema` is a hidden constant dashboard variable (default `serving`, SERVING_SCHEMA's default).
Grafana substitutes it like any variable (raw, single value), so a deployment with another schema edits
that one constant; the chart renderer and the tests substitute the configured (or throwaway) schema the
same way, through binance_cdc.serve.grafana_sql.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from binance_cdc.serve.grafana_sql import VARIABLE_PATTERN, TemplateVariable

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PROVISIONING_DIR = PROJECT_ROOT / "grafana" / "provisioning"
DASHBOARD_PATH = PROVISIONING_DIR / "dashboards" / "json" / "binance_pipeline.json"

DATASOURCE_TYPE = "grafana-postgresql-datasource"
DATASOURCE_UID = "binance-serving-pg"  # fixed in grafana/provisioning/datasources/postgres.yaml
DATASOURCE = {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID}
DASHBOARD_UID = "binance-pipeline"
SCHEMA_VARIABLE = "serving_schema"
DEFAULT_SCHEMA = "serving"

# --- the panel SQL ----------------------------------------------------------------------------------

SYMBOLS_SQL = "SELECT DISTINCT symbol FROM $serving_schema.latest_prices ORDER BY 1"

MOST_TRADED_SQL = """\
SELECT symbol, trades
FROM (
  SELECT DISTINCT ON (symbol) symbol, trade_count AS trades
  FROM $serving_schema.daily_ticker
  WHERE $__timeFilter(close_time)
  ORDER BY symbol, close_time DESC
) latest
ORDER BY trades DESC, symbol
LIMIT 10"""

VOLUME_BY_HOUR_SQL = """\
SELECT $__timeGroupAlias(open_time,'1h'),
       sum(volume) AS volume
FROM $serving_schema.klines
WHERE $__timeFilter(open_time)
  AND symbol = '$symbol'
  AND interval = '30m'
GROUP BY 1
ORDER BY 1"""

HOURLY_CANDLES_SQL = """\
SELECT $__timeGroupAlias(open_time,'1h'),
       (array_agg(open_price ORDER BY open_time ASC))[1] AS open,
       max(high_price) AS high,
       min(low_price) AS low,
       (array_agg(close_price ORDER BY open_time DESC))[1] AS close,
       sum(volume) AS volume
FROM $serving_schema.klines
WHERE $__timeFilter(open_time)
  AND symbol = '$candle_symbol'
  AND interval = '30m'
GROUP BY 1
ORDER BY 1"""

ORDER_BOOK_SQL = """\
WITH latest AS (
  SELECT DISTINCT ON (symbol) symbol, captured_date, last_update_id
  FROM $serving_schema.order_book
  WHERE $__timeFilter(captured_at)
  ORDER BY symbol, captured_at DESC, last_update_id DESC
)
SELECT o.symbol,
       sum(o.quantity) FILTER (WHERE o.side = 'bid') AS bids,
       sum(o.quantity) FILTER (WHERE o.side = 'ask') AS asks
FROM $serving_schema.order_book o
JOIN latest l USING (symbol, captured_date, last_update_id)
GROUP BY o.symbol
ORDER BY sum(o.quantity) DESC, o.symbol"""

LATEST_PRICES_SQL = """\
SELECT p.symbol,
       p.price,
       t.price_change_percent AS "24h change",
       p.observed_at AS "observed at"
FROM $serving_schema.latest_prices p
LEFT JOIN LATERAL (
  SELECT d.price_change_percent
  FROM $serving_schema.daily_ticker d
  WHERE d.symbol = p.symbol
  ORDER BY d.close_time DESC
  LIMIT 1
) t ON true
ORDER BY p.symbol"""

FRESHNESS_SQL = """\
SELECT $__timeGroupAlias(trade_time,'$__interval'),
       avg(extract(epoch from cdc_source_ts - trade_time)) AS "exchange -> Postgres",
       avg(extract(epoch from cdc_written_at - cdc_source_ts)) AS "Postgres -> Cassandra",
       avg(extract(epoch from served_at - cdc_written_at)) AS "Cassandra -> serving"
FROM $serving_schema.recent_trades
WHERE $__timeFilter(trade_time)
GROUP BY 1
ORDER BY 1"""


# --- building the model -----------------------------------------------------------------------------


def _target(sql: str, fmt: str) -> dict[str, Any]:
    return {"refId": "A", "datasource": dict(DATASOURCE), "editorMode": "code", "rawQuery": True,
            "rawSql": sql, "format": fmt}


def _panel(pid: int, kind: str, title: str, description: str, sql: str, fmt: str, unit: str,
           grid: tuple[int, int, int, int], options: dict | None = None, custom: dict | None = None,
           overrides: list | None = None, max_data_points: int | None = None) -> dict[str, Any]:
    h, w, x, y = grid
    defaults: dict[str, Any] = {"unit": unit}
    if custom:
        defaults["custom"] = custom
    return {
        "id": pid, "type": kind, "title": title, "description": description,
        "datasource": dict(DATASOURCE),
        "gridPos": {"h": h, "w": w, "x": x, "y": y},
        "targets": [_target(sql, fmt)],
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": options or {},
        **({"maxDataPoints": max_data_points} if max_data_points else {}),
    }


def _override(field: str, **props: Any) -> dict[str, Any]:
    return {"matcher": {"id": "byName", "options": field},
            "properties": [{"id": k, "value": v} for k, v in props.items()]}


def _query_variable(name: str, label: str, default: str) -> dict[str, Any]:
    return {"type": "query", "name": name, "label": label, "datasource": dict(DATASOURCE),
            "query": SYMBOLS_SQL, "definition": SYMBOLS_SQL, "refresh": 1, "sort": 1, "regex": "",
            "multi": False, "includeAll": False, "hide": 0,
            "current": {"selected": True, "text": default, "value": default}, "options": []}


def build_dashboard() -> dict[str, Any]:
    legend = {"displayMode": "list", "placement": "bottom", "showLegend": True}
    log_axis = {"scaleDistribution": {"type": "log", "log": 10}, "axisLabel": "coins ordered (base-asset units)"}
    panels = [
        _panel(1, "barchart", "Most traded symbols (24 h trade count)",
               "Trades in Binance's rolling 24 h window (ticker/24hr `count`), from each symbol's latest "
               "daily_ticker row in the time range. The original project found XRP, AVAX, BTC and DOGE on top.",
               MOST_TRADED_SQL, "table", "short", (9, 12, 0, 0), custom={"axisLabel": "trades in 24 h"},
               options={"orientation": "horizontal", "xField": "symbol", "showValue": "auto",
                        "legend": {**legend, "showLegend": False}, "tooltip": {"mode": "single"}}),
        _panel(2, "timeseries", "Volume by hour: $symbol",
               "Base-asset volume per UTC hour: the sum of the two 30-minute klines of each hour "
               "(Binance's exact volume, not a sample of trades).",
               VOLUME_BY_HOUR_SQL, "time_series", "short", (9, 12, 12, 0),
               options={"legend": legend, "tooltip": {"mode": "single"}},
               custom={"drawStyle": "bars", "fillOpacity": 60, "lineWidth": 1,
                       "axisLabel": "volume per hour (base asset)"}),
        _panel(3, "candlestick", "Hourly candles: $candle_symbol",
               "Hourly OHLC built from the 30-minute klines: open of the hour's first kline, close of its "
               "last, max high, min low, summed volume. Prices in USDT; times in UTC.",
               HOURLY_CANDLES_SQL, "time_series", "currencyUSD", (10, 24, 0, 9), custom={"axisLabel": "price (USDT)"},
               options={"mode": "candles+volume", "candleStyle": "candles", "colorStrategy": "open-close",
                        "colors": {"up": "green", "down": "red"}, "includeAllFields": False, "legend": legend},
               overrides=[_override("volume", unit="short")]),
        _panel(4, "barchart", "Coins on the order book (latest snapshot)",
               "Quantity of coins ordered per symbol, in base units, summed over the price levels of each "
               "symbol's latest order-book snapshot in the range (top 100 levels per side). Log scale: "
               "DOGE counts in hundreds of thousands, BTC in units.",
               ORDER_BOOK_SQL, "table", "short", (9, 12, 0, 19),
               options={"orientation": "horizontal", "xField": "symbol", "showValue": "never",
                        "groupWidth": 0.8, "barWidth": 0.9, "legend": legend, "tooltip": {"mode": "multi"}},
               custom=log_axis),
        _panel(5, "table", "Latest prices",
               "Last price per symbol (ticker/price) with the 24 h change from the latest daily ticker. "
               "Exact decimals live in the serving tables; Grafana displays NUMERIC as float64.",
               LATEST_PRICES_SQL, "table", "none", (9, 12, 12, 19),
               options={"showHeader": True, "cellHeight": "sm"},
               overrides=[_override("24h change", unit="percent", decimals=2),
                          _override("observed at", unit="dateTimeAsIso")]),
        _panel(6, "timeseries", "Pipeline freshness per hop",
               "Average delay per hop for the trades of each interval: exchange trade time -> Postgres "
               "commit (includes the extractor's polling), Postgres commit -> Cassandra write "
               "(Debezium, Kafka, Spark), Cassandra write -> serving table (pg_cassandra_bridge.py). "
               "Buckets of $__interval (24 h / 200 points = 5 min by default).",
               FRESHNESS_SQL, "time_series", "s", (9, 24, 0, 28),
               options={"legend": {**legend, "calcs": ["mean", "max"], "displayMode": "table"},
                        "tooltip": {"mode": "multi"}},
               custom={"drawStyle": "line", "lineWidth": 2, "fillOpacity": 10, "showPoints": "auto",
                       "axisLabel": "delay (seconds)"},
               max_data_points=200),
    ]
    templating = [
        {"type": "constant", "name": SCHEMA_VARIABLE, "label": "Serving schema", "hide": 2,
         "query": DEFAULT_SCHEMA, "current": {"text": DEFAULT_SCHEMA, "value": DEFAULT_SCHEMA},
         "description": "Postgres schema the bridge writes (SERVING_SCHEMA); change it here if yours differs."},
        _query_variable("symbol", "Symbol (volume)", "ETHUSDT"),
        _query_variable("candle_symbol", "Symbol (candles)", "BTCUSDT"),
    ]
    return {
        "uid": DASHBOARD_UID,
        "title": "Binance CDC pipeline",
        "description": "The four insights of the original project plus latest prices and pipeline freshness, "
                       "read from the serving schema that pg_cassandra_bridge.py fills from Cassandra.",
        "tags": ["binance", "cdc"],
        "timezone": "utc",
        "schemaVersion": 41,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "refresh": "1m",
        "time": {"from": "now-24h", "to": "now"},
        "timepicker": {},
        "links": [],
        "annotations": {"list": []},
        "templating": {"list": templating},
        "panels": panels,
    }


def render_json(model: dict[str, Any]) -> str:
    return json.dumps(model, indent=2, ensure_ascii=False) + "\n"


# --- reading it back --------------------------------------------------------------------------------


def load_dashboard(path: Path = DASHBOARD_PATH) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class PanelQuery:
    panel_id: int
    panel_type: str
    title: str
    unit: str
    fmt: str
    raw_sql: str
    max_data_points: int | None = None  # the panel's query option; Grafana's default is the panel width
    custom: dict | None = None  # fieldConfig.defaults.custom: axisLabel, drawStyle, scaleDistribution


def panel_queries(model: dict[str, Any]) -> Iterator[PanelQuery]:
    for panel in model["panels"]:
        for target in panel.get("targets", []):
            yield PanelQuery(panel["id"], panel["type"], panel["title"],
                             panel["fieldConfig"]["defaults"].get("unit", ""), target["format"], target["rawSql"],
                             panel.get("maxDataPoints"), panel["fieldConfig"]["defaults"].get("custom", {}))


def default_variables(model: dict[str, Any], schema: str | None = None) -> dict[str, TemplateVariable]:
    """The dashboard variables' current values (what Grafana substitutes on first load); `schema`
    overrides the serving_schema constant (the configured SERVING_SCHEMA or a test's throwaway)."""
    values: dict[str, TemplateVariable] = {}
    for var in model["templating"]["list"]:
        value = var["query"] if var["type"] == "constant" else var["current"]["value"]
        values[var["name"]] = TemplateVariable(value, multi=bool(var.get("multi") or var.get("includeAll")))
    if schema is not None:
        values[SCHEMA_VARIABLE] = TemplateVariable(schema)
    return values


def interpolate_title(title: str, variables: dict[str, TemplateVariable]) -> str:
    """A panel title as Grafana shows it (variables inserted as text, unquoted)."""

    def replace(match: re.Match) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        if name not in variables:
            return match.group(0)
        value = variables[name].value
        return value if isinstance(value, str) else " + ".join(value)

    return VARIABLE_PATTERN.sub(replace, title)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", action="store_true", help="write the dashboard JSON")
    group.add_argument("--check", action="store_true", help="exit 1 when the committed JSON differs")
    args = parser.parse_args(argv)
    text = render_json(build_dashboard())
    if args.write:
        DASHBOARD_PATH.parent.mkdir(parents=True, exist_ok=True)
        DASHBOARD_PATH.write_text(text, encoding="utf-8")
        print(f"wrote {DASHBOARD_PATH.relative_to(PROJECT_ROOT)}")
        return 0
    if DASHBOARD_PATH.exists() and DASHBOARD_PATH.read_text(encoding="utf-8") == text:
        return 0
    print(f"{DASHBOARD_PATH.relative_to(PROJECT_ROOT)} is stale: run python -m binance_cdc.serve.dashboard --write",
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
