"""Render every dashboard panel to a PNG, from the SQL the dashboard JSON holds.

One source of truth: grafana/provisioning/dashboards/json/binance_pipeline.json. Each panel's rawSql is
expanded as Grafana would (binance_cdc.serve.grafana_sql: variables at their defaults, the serving
schema from SERVING_SCHEMA, macros for the time range), read through SQLAlchemy into pandas as the Grafana
role (GRAFANA_PG_USER, SELECT on the serving schema only) and drawn with matplotlib (Agg) the way its
panel type shows it. PNG bytes are deterministic: fixed sizes, dpi and font, no Software metadata.

Reads: SERVING_PG_HOST, SERVING_PG_PORT, SERVING_PG_DATABASE, SERVING_PG_SSLMODE, SERVING_SCHEMA,
GRAFANA_PG_USER, GRAFANA_PG_PASSWORD (from the environment or .env).

    python -m binance_cdc.serve.charts --out docs/charts
    python -m binance_cdc.serve.charts --out /tmp/c --from 2026-12-01T00:00:00Z --to 2026-12-02T00:00:00Z \\
        --var symbol=SOLUSDT

Default range: the 24 h ending at the top of the hour after the newest row in the serving tables (UTC),
so the pictures show the data present even when the pipeline has been stopped for a while.
Exit codes: 0 every panel rendered (an empty result is drawn as "no data" and logged), 2 bad arguments
or settings, 3 the serving database could not be read.
"""

from __future__ import annotations

import argparse
import io
import logging
import re
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Mapping

from binance_cdc.datasets import DATASETS
from binance_cdc.serve import dashboard as dash
from binance_cdc.serve.grafana_sql import TemplateVariable, TimeRange, calculate_interval, expand, rfc3339nano

log = logging.getLogger(__name__)

FIGSIZE = (10.0, 5.6)  # inches
TABLE_FIGSIZE = (10.0, 3.6)
DPI = 100
FONT = "DejaVu Sans"  # bundled with matplotlib: same glyphs on every machine
UP, DOWN = "#1a9850", "#d73027"  # green candle (close >= open), red candle
SERIES_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b")
RC = {
    "font.family": FONT, "font.size": 9, "axes.titlesize": 11, "axes.labelsize": 9,
    "axes.grid": True, "grid.alpha": 0.3, "figure.facecolor": "white", "axes.facecolor": "white",
    "savefig.facecolor": "white", "path.simplify": False, "svg.hashsalt": "binance",
}

ALL_TABLES = {d.name: d.event_time for d in DATASETS.values()}


@dataclass(frozen=True)
class Chart:
    panel: dash.PanelQuery
    title: str
    frame: Any  # pandas.DataFrame, time column converted to UTC datetimes, numbers to float
    time_range: TimeRange
    sql: str
    raw: Any = None  # the result as Postgres returned it (Decimal, datetime): the table panel shows it exactly


# --- reading -------------------------------------------------------------------------------------------


def _quote_ident(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return f'"{name}"'


def newest_data_time(engine, schema: str) -> datetime | None:
    """The newest time in any serving table (None when all are empty)."""
    parts = [f"SELECT max({col}) AS t FROM {_quote_ident(schema)}.{table}" for table, col in ALL_TABLES.items()]
    with engine.connect() as conn:
        value = conn.exec_driver_sql(f"SELECT max(t) FROM ({' UNION ALL '.join(parts)}) s").scalar()
    return value.astimezone(timezone.utc) if value is not None else None


def default_time_range(newest: datetime | None, hours: int = 24) -> TimeRange:
    end = newest or datetime.now(timezone.utc)
    end = end.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return TimeRange(end - timedelta(hours=hours), end)


def to_grafana_frame(frame):
    """What Grafana's SQL data source does to a result: a numeric `time` column (epoch seconds from
    extract(epoch ...) on Postgres 14+) becomes a UTC time, timestamps are UTC, NUMERIC becomes float64."""
    import pandas as pd

    frame = frame.copy()
    for col in frame.columns:
        series = frame[col]
        non_null = series.dropna()
        if col == "time":
            if len(non_null) and isinstance(non_null.iloc[0], (Decimal, int, float)):
                frame[col] = pd.to_datetime(series.astype(float), unit="s", utc=True)
            else:
                frame[col] = pd.to_datetime(series, utc=True)
        elif len(non_null) and isinstance(non_null.iloc[0], Decimal):
            frame[col] = series.astype(float)
    return frame


def read_sql(engine, sql: str):
    """The rows of `sql` exactly as Postgres returns them (NUMERIC stays Decimal), in a DataFrame.

    The text goes to the server untouched, as Grafana sends it: executed on the DBAPI cursor without
    parameters. (pandas.read_sql_query would pass it through exec_driver_sql with an empty parameter
    set, so psycopg2 would treat every `%` as a placeholder; text() would take `:word` for a bind.)"""
    import pandas as pd

    with engine.connect() as conn:
        cursor = conn.connection.cursor()
        try:
            cursor.execute(sql)
            columns = [d[0] for d in cursor.description]
            rows = cursor.fetchall()
        finally:
            cursor.close()
        conn.rollback()
    return pd.DataFrame.from_records(rows, columns=columns)


def read_panel(engine, panel: dash.PanelQuery, time_range: TimeRange,
               variables: Mapping[str, TemplateVariable], interval: timedelta | None = None):
    """(expanded SQL, raw result, result as Grafana's data frame)."""
    if interval is None:
        interval = calculate_interval(time_range, panel.max_data_points or 1000)
    sql = expand(panel.raw_sql, time_range, variables, interval)
    raw = read_sql(engine, sql)
    return sql, raw, to_grafana_frame(raw)


def collect(engine, model: dict, schema: str, time_range: TimeRange | None = None,
            overrides: Mapping[str, str] | None = None) -> list[Chart]:
    variables = dash.default_variables(model, schema)
    for name, value in (overrides or {}).items():
        variables[name] = TemplateVariable(value)
    if time_range is None:
        time_range = default_time_range(newest_data_time(engine, schema))
    charts = []
    for panel in dash.panel_queries(model):
        sql, raw, frame = read_panel(engine, panel, time_range, variables)
        title = dash.interpolate_title(panel.title, variables)
        log.log(logging.INFO if len(frame) else logging.WARNING, "panel %s %r: %d rows (schema %s, %s to %s)",
                panel.panel_id, title, len(frame), schema, rfc3339nano(time_range.start),
                rfc3339nano(time_range.end))
        charts.append(Chart(panel, title, frame, time_range, sql, raw))
    return charts


# --- drawing -------------------------------------------------------------------------------------------


def _utc_axis(ax, time_range: TimeRange) -> None:
    import matplotlib.dates as mdates

    span = time_range.end - time_range.start
    fmt = "%H:%M" if span <= timedelta(days=1) else "%m-%d %H:%M"
    ax.xaxis.set_major_locator(mdates.AutoDateLocator(tz=timezone.utc, minticks=4, maxticks=10))
    ax.xaxis.set_major_formatter(mdates.DateFormatter(fmt, tz=timezone.utc))
    ax.set_xlim(time_range.start, time_range.end)
    ax.set_xlabel(f"time (UTC), {time_range.start:%Y-%m-%d %H:%M} to {time_range.end:%Y-%m-%d %H:%M}")


def _custom(chart: Chart) -> dict:
    """The panel's fieldConfig.defaults.custom: the axis label, draw style and scale come from the JSON."""
    return chart.panel.custom or {}


def _value_label(chart: Chart, fallback: str) -> str:
    return _custom(chart).get("axisLabel") or fallback


def _step(times) -> timedelta:
    """The bucket width of a time column (its smallest gap; 1 h for a single row)."""
    gaps = times.sort_values().diff().dropna()
    return gaps.min().to_pytimedelta() if len(gaps) else timedelta(hours=1)


def _draw_timeseries(fig, chart: Chart) -> None:
    frame, ax = chart.frame, fig.add_subplot(1, 1, 1)
    values = [c for c in frame.columns if c != "time"]
    bars = _custom(chart).get("drawStyle") == "bars"
    step = _step(frame["time"])
    for i, col in enumerate(values):
        color = SERIES_COLORS[i % len(SERIES_COLORS)]
        if bars:  # a bucket's bar spans its interval, starting at the bucket time
            ax.bar(frame["time"] + step / 2, frame[col], width=step * 0.85, color=color, label=col)
        else:
            ax.plot(frame["time"], frame[col], color=color, linewidth=1.6, label=col,
                    marker="o" if len(frame) <= 60 else None, markersize=3)
    _utc_axis(ax, chart.time_range)
    ax.set_ylabel(_value_label(chart, chart.panel.unit))
    top = float(frame[values].max().max()) if values and len(frame) else 1.0
    ax.set_ylim(0, top * 1.25 if top > 0 else 1.0)  # headroom for the legend
    if values:
        ax.legend(loc="upper left", frameon=False, ncol=min(len(values), 3))


def _draw_candles(fig, chart: Chart) -> None:
    import numpy as np

    frame = chart.frame
    grid = fig.add_gridspec(2, 1, height_ratios=(3, 1), hspace=0.08)
    ax, axv = fig.add_subplot(grid[0]), fig.add_subplot(grid[1])
    step = _step(frame["time"])
    centres, width = frame["time"] + step / 2, step * 2 / 3
    opens, closes = frame["open"].to_numpy(float), frame["close"].to_numpy(float)
    up = closes >= opens
    colors = np.where(up, UP, DOWN)
    ax.vlines(centres, frame["low"], frame["high"], colors=colors, linewidth=1.0, zorder=1)  # wick low..high
    bottoms, heights = np.minimum(opens, closes), np.abs(closes - opens)
    heights = np.maximum(heights, (frame["high"].max() - frame["low"].min()) * 0.002 if len(frame) else 0)
    ax.bar(centres, heights, bottom=bottoms, width=width, color=colors, edgecolor=colors, linewidth=0.6, zorder=2)
    axv.bar(centres, frame["volume"], width=width, color=colors, alpha=0.6)
    for a in (ax, axv):
        _utc_axis(a, chart.time_range)
    ax.set_xlabel("")
    ax.tick_params(labelbottom=False)
    ax.set_ylabel(_value_label(chart, "price"))
    axv.set_ylabel("volume")
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color=UP, label="close >= open"), Patch(color=DOWN, label="close < open")],
              loc="upper left", frameon=False)


def _draw_barchart(fig, chart: Chart) -> None:
    import numpy as np

    frame, ax = chart.frame, fig.add_subplot(1, 1, 1)
    label_col = next(c for c in frame.columns if frame[c].dtype == object)
    values = [c for c in frame.columns if c != label_col]
    labels = frame[label_col].tolist()[::-1]  # first row on top, as Grafana's horizontal bars
    y = np.arange(len(labels))
    height = 0.8 / max(len(values), 1)
    for i, col in enumerate(values):
        data = frame[col].to_numpy(float)[::-1]
        offset = (i - (len(values) - 1) / 2) * height
        ax.barh(y - offset, data, height=height, color=SERIES_COLORS[i % len(SERIES_COLORS)], label=col)
        if len(values) == 1:
            for yy, v in zip(y, data):
                ax.annotate(f"{v:,.0f}", (v, yy), xytext=(3, 0), textcoords="offset points", va="center",
                            fontsize=8)
    ax.set_yticks(y, labels)
    ax.set_ylabel(label_col)
    label = _value_label(chart, values[0] if len(values) == 1 else "value")
    if _custom(chart).get("scaleDistribution", {}).get("type") == "log":
        ax.set_xscale("log")
        ax.set_xlabel(f"{label}, log scale")
    else:
        from matplotlib.ticker import FuncFormatter

        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))
        ax.set_xlabel(label)
        ax.margins(x=0.12)
    ax.grid(axis="y", visible=False)
    if len(values) > 1:
        ax.legend(loc="lower right", frameon=False)


def _cell(value, column: str) -> str:
    import pandas as pd

    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, pd.Timestamp):
        return value.tz_convert("UTC").strftime("%Y-%m-%d %H:%M:%S UTC")
    text = format(value.normalize(), "f") if isinstance(value, Decimal) else str(value)
    if column == "24h change":  # Grafana unit "percent": the value is already in percent
        return ("+" if value > 0 else "") + text + " %"
    return text


def _draw_table(fig, chart: Chart) -> None:
    ax = fig.add_subplot(1, 1, 1)
    ax.axis("off")
    frame = chart.raw if chart.raw is not None else chart.frame
    cells = [[_cell(v, c) for c, v in zip(frame.columns, row)] for row in frame.itertuples(index=False)]
    if not cells:
        return
    table = ax.table(cellText=cells, colLabels=list(frame.columns), loc="upper center", cellLoc="right",
                     colLoc="right")
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    table.scale(1, 1.35)
    for (row, _col), cell in table.get_celld().items():
        if row == 0:
            cell.set_text_props(weight="bold")
            cell.set_facecolor("#eeeeee")


DRAWERS = {"timeseries": _draw_timeseries, "candlestick": _draw_candles, "barchart": _draw_barchart,
           "table": _draw_table}


def render_png(chart: Chart, note: str = "") -> bytes:
    """One panel as PNG bytes; the same input gives the same bytes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.rc_context(RC):
        fig = Figure(figsize=TABLE_FIGSIZE if chart.panel.panel_type == "table" else FIGSIZE, dpi=DPI)
        FigureCanvasAgg(fig)
        fig.suptitle(chart.title, fontsize=12, fontweight="bold", x=0.01, ha="left")
        if chart.frame.empty:
            fig.text(0.5, 0.5, "no data in the time range", ha="center", va="center", fontsize=12, color="grey")
        else:
            DRAWERS[chart.panel.panel_type](fig, chart)
        footer = (f"panel {chart.panel.panel_id} of dashboard {dash.DASHBOARD_UID}, same SQL, range "
                  f"{rfc3339nano(chart.time_range.start)} to {rfc3339nano(chart.time_range.end)}")
        fig.text(0.01, 0.01, footer + (f"  |  {note}" if note else ""), fontsize=7, color="#555555")
        left = 0.13 if chart.panel.panel_type == "barchart" else 0.1
        fig.subplots_adjust(left=left, right=0.97, top=0.9, bottom=0.17)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def file_name(chart: Chart) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", chart.title.lower()).strip("_")
    return f"{chart.panel.panel_id:02d}_{slug}.png"


def render_all(engine, out_dir: Path, schema: str, time_range: TimeRange | None = None,
               overrides: Mapping[str, str] | None = None, note: str = "",
               model: dict | None = None) -> list[Path]:
    model = model or dash.load_dashboard()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for chart in collect(engine, model, schema, time_range, overrides):
        path = out_dir / file_name(chart)
        path.write_bytes(render_png(chart, note))
        written.append(path)
    return written


# --- command line --------------------------------------------------------------------------------------


def _parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r}: give a UTC offset, e.g. 2026-12-01T00:00:00Z")
    return moment


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Render the dashboard panels to PNGs (same SQL as Grafana).")
    parser.add_argument("--out", type=Path, default=Path("docs/charts"), help="output folder (default docs/charts)")
    parser.add_argument("--from", dest="start", type=_parse_time, help="range start (ISO 8601 with offset)")
    parser.add_argument("--to", dest="end", type=_parse_time, help="range end (default: see module doc)")
    parser.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                        help="dashboard variable value, e.g. symbol=SOLUSDT (repeatable)")
    parser.add_argument("--note", default="", help="text added to each footer (e.g. 'simulated data')")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from binance_cdc.postgres_conn import sqlalchemy_url
    from binance_cdc.settings import SettingsError, load_dotenv_file, load_settings

    try:
        overrides = dict(v.split("=", 1) for v in args.var)
    except ValueError:
        parser.error("--var takes NAME=VALUE")
    load_dotenv_file()
    try:
        settings = load_settings("serving", "grafana_login")
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    time_range = None
    if args.start or args.end:
        if not (args.start and args.end):
            parser.error("give both --from and --to")
        time_range = TimeRange(args.start, args.end)

    import psycopg2
    from sqlalchemy import create_engine
    from sqlalchemy.exc import SQLAlchemyError

    engine = create_engine(sqlalchemy_url(settings.serving, settings.grafana_login))
    try:
        paths = render_all(engine, args.out, settings.serving.schema, time_range, overrides, args.note)
    except (SQLAlchemyError, psycopg2.Error) as exc:
        cause = getattr(exc, "orig", None) or exc
        log.error("reading schema %s as %s failed: %s: %s", settings.serving.schema, settings.grafana_login.user,
                  type(cause).__name__, str(cause).strip())
        return 3
    finally:
        engine.dispose()
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
