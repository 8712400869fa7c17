"""Lint of the provisioned dashboard JSON (no Grafana needed): the rules of grafana/dashboard-linter and
file provisioning that matter here, plus our own (schema variable, UTC, macro traps)."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

import pytest
import yaml

from binance_cdc.serve import dashboard as dash
from binance_cdc.serve.grafana_sql import TimeRange, expand
from binance_cdc.settings import VARIABLES

MODEL = dash.load_dashboard()
PANELS = MODEL["panels"]
DATASOURCE_YAML = dash.PROVISIONING_DIR / "datasources" / "postgres.yaml"
SERVING_TABLES = {"recent_trades", "order_book", "klines", "daily_ticker", "latest_prices", "bridge_runs"}

# Grafana unit ids (packages/grafana-data valueFormats categories) this dashboard may use.
GRAFANA_UNITS = {
    "none", "short", "sci", "locale", "percent", "percentunit", "s", "ms", "m", "h", "d", "dtdurations",
    "dtdurationms", "currencyUSD", "currencyEUR", "currencyBTC", "bytes", "decbytes", "dateTimeAsIso",
    "dateTimeAsSystem", "dateTimeFromNow", "ops", "reqps", "string",
}
FORMAT_OF_TYPE = {"timeseries": "time_series", "candlestick": "time_series", "barchart": "table",
                  "table": "table", "stat": "table"}
PANEL_IDS = [p["id"] for p in PANELS]


def panel(pid: int) -> dict:
    return next(p for p in PANELS if p["id"] == pid)


def test_committed_json_is_what_the_builder_writes():
    assert dash.DASHBOARD_PATH.read_text(encoding="utf-8") == dash.render_json(dash.build_dashboard()), \
        "stale dashboard JSON: run python -m binance_cdc.serve.dashboard --write"


def test_top_level_model_for_file_provisioning():
    assert "dashboard" not in MODEL, "the {'dashboard': ...} wrapper is the HTTP API payload; files hold the model"
    assert MODEL["title"].strip() and MODEL["uid"] == dash.DASHBOARD_UID
    assert MODEL.get("id") is None
    assert MODEL["schemaVersion"] in (41, 42)
    assert MODEL["timezone"] == "utc", "buckets are UTC hours and days"


def test_dashboard_uids_are_unique_across_the_provisioned_folder():
    uids = [json.loads(p.read_text())["uid"] for p in dash.DASHBOARD_PATH.parent.glob("*.json")]
    assert len(uids) == len(set(uids)) and dash.DASHBOARD_UID in uids


def test_panel_ids_and_titles_are_unique():
    assert len(PANEL_IDS) == len(set(PANEL_IDS))
    titles = [p["title"] for p in PANELS]
    assert len(titles) == len(set(titles))


def test_the_six_insights_are_there():
    types = [p["type"] for p in PANELS]
    assert types == ["barchart", "timeseries", "candlestick", "barchart", "table", "timeseries"]


@pytest.mark.parametrize("pid", PANEL_IDS)
def test_panel_has_title_description_and_valid_units(pid):
    p = panel(pid)
    assert p["title"].strip() and len(p["description"].strip()) > 20
    assert p["fieldConfig"]["defaults"]["unit"] in GRAFANA_UNITS
    for override in p["fieldConfig"]["overrides"]:
        for prop in override["properties"]:
            if prop["id"] == "unit":
                assert prop["value"] in GRAFANA_UNITS


def test_datasource_uid_matches_the_provisioned_one():
    provisioned = yaml.safe_load(DATASOURCE_YAML.read_text())["datasources"]
    assert [d["uid"] for d in provisioned] == [dash.DATASOURCE_UID]
    assert provisioned[0]["type"] == dash.DATASOURCE_TYPE == "grafana-postgresql-datasource"


@pytest.mark.parametrize("pid", PANEL_IDS)
def test_every_target_is_an_explicit_raw_sql_query_on_the_provisioned_datasource(pid):
    p = panel(pid)
    assert p["datasource"] == dash.DATASOURCE
    assert p["targets"], "a data panel needs targets"
    ref_ids = [t["refId"] for t in p["targets"]]
    assert len(ref_ids) == len(set(ref_ids))
    for t in p["targets"]:
        assert t["datasource"] == {"type": dash.DATASOURCE_TYPE, "uid": dash.DATASOURCE_UID}
        assert t["editorMode"] == "code" and t["rawQuery"] is True and t["rawSql"].strip()
        assert "format" in t, "a missing format means time_series"
        assert t["format"] == FORMAT_OF_TYPE[p["type"]]


MACRO = re.compile(r"\$([_a-zA-Z0-9]+)\(([^\)]*)\)")


@pytest.mark.parametrize("pid", PANEL_IDS)
def test_sql_avoids_the_macro_traps(pid):
    sql = panel(pid)["targets"][0]["rawSql"]
    for match in MACRO.finditer(sql):
        after = sql[match.end():match.end() + 1]
        assert "(" not in match.group(2), f"macro argument holds a call: {match.group(0)} (cut at the first ')')"
        if match.group(1) == "__timeGroup":
            assert after != ",", "$__timeGroup followed by ',' gets AS \"time\" everywhere: use $__timeGroupAlias"
    assert not re.search(r"GROUP BY\s+\$__timeGroup", sql), "GROUP BY 1 instead"


@pytest.mark.parametrize("pid", [p["id"] for p in PANELS if p["targets"][0]["format"] == "time_series"])
def test_time_series_sql_has_a_time_column_and_orders_by_it(pid):
    sql = panel(pid)["targets"][0]["rawSql"]
    assert re.search(r'\$__timeGroupAlias\(|\$__time\(|AS "time"', sql)
    assert re.search(r"ORDER BY (1|\"?time\"?)\s*(ASC)?\s*$", sql.strip(), re.IGNORECASE), \
        "rows must be sorted by time (unsorted is an error in Grafana)"


@pytest.mark.parametrize("pid", [p["id"] for p in PANELS if p["type"] != "table"])
def test_value_axes_are_labelled(pid):
    assert panel(pid)["fieldConfig"]["defaults"]["custom"]["axisLabel"].strip()


def test_candlestick_columns():
    sql = panel(3)["targets"][0]["rawSql"]
    for col in ("open", "high", "low", "close", "volume"):
        assert re.search(rf"\bAS {col}\b", sql)


@pytest.mark.parametrize("pid", PANEL_IDS)
def test_every_table_is_qualified_by_the_schema_variable(pid):
    sql = panel(pid)["targets"][0]["rawSql"]
    ctes = set(re.findall(r"(?:WITH|,)\s*(\w+)\s+AS\s*\(", sql))
    for ref in re.findall(r"\b(?:FROM|JOIN)\s+(?!LATERAL\b)([\w$.]+)", sql):
        if ref in ctes:
            continue
        schema, _, table = ref.rpartition(".")
        assert schema == "$" + dash.SCHEMA_VARIABLE and table in SERVING_TABLES, ref
    assert "serving." not in sql.replace("$serving_schema.", "")


def test_schema_variable_is_a_hidden_constant_defaulting_to_serving_schema():
    variables = {v["name"]: v for v in MODEL["templating"]["list"]}
    schema = variables[dash.SCHEMA_VARIABLE]
    default = next(v.default for v in VARIABLES if v.env == "SERVING_SCHEMA")
    assert schema["type"] == "constant" and schema["hide"] == 2 and schema["query"] == default


def test_symbol_variables_are_queries_over_the_serving_tables():
    variables = {v["name"]: v for v in MODEL["templating"]["list"]}
    assert variables["symbol"]["current"]["value"] == "ETHUSDT"
    assert variables["candle_symbol"]["current"]["value"] == "BTCUSDT"
    for name in ("symbol", "candle_symbol"):
        var = variables[name]
        assert var["type"] == "query" and var["datasource"] == dash.DATASOURCE
        assert "$serving_schema.latest_prices" in var["query"] and not var["multi"]


def test_every_variable_used_is_defined():
    defined = {v["name"] for v in MODEL["templating"]["list"]}
    texts = [p["title"] for p in PANELS] + [t["rawSql"] for p in PANELS for t in p["targets"]]
    used = {name for text in texts for name in re.findall(r"\$\{?(\w+)", text) if not name.startswith("__")}
    assert used <= defined


@pytest.mark.parametrize("query", list(dash.panel_queries(MODEL)), ids=lambda q: f"panel{q.panel_id}")
def test_every_panel_expands_completely(query):
    tr = TimeRange(datetime(2026, 11, 29, 18, tzinfo=timezone.utc), datetime(2026, 11, 30, 18, tzinfo=timezone.utc))
    sql = expand(query.raw_sql, tr, dash.default_variables(MODEL, "serving_x"))
    assert "$" not in sql
    assert "serving_x." in sql
    if "$__timeFilter" in query.raw_sql:
        assert "BETWEEN '2026-11-29T18:00:00Z' AND '2026-11-30T18:00:00Z'" in sql
