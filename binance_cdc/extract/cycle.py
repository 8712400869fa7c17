"""One extraction cycle: Binance market data -> Postgres schema `binance`, each dataset in its own commit.

run(settings, symbols, datasets) does, in order:
1. check the symbol names (Binance's '^[A-Z0-9-_.]{1,20}$') before any request (ConfigError names them);
2. take the run lock (pg_try_advisory_lock on a fixed key) for the whole cycle, or exit LOCKED;
3. ask /api/v3/exchangeInfo?symbols=[...] which symbols trade: not TRADING -> skipped with a warning;
   -1121 for the batch -> one exchangeInfo call without symbols (weight 20, whatever the number of
   symbols, where asking one by one costs 20 each) names the unknown ones, which are skipped;
4. per dataset: fetch (batched tickers in one request per 100 symbols, the rest one request per symbol on
   BINANCE_MAX_WORKERS threads), transform, load in bulk and commit. A failing symbol or dataset is
   logged and counted; what was fetched for the others is still committed;
5. log one summary line per dataset and return the exit code.

418 (banned) and 451 (restricted location) stop the run after committing what was already fetched.
Exit codes: 0 ok, 1 some dataset or symbol failed, 2 configuration error, 3 another run holds the lock,
4 IP banned (418), 5 restricted location (451).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Sequence

from binance_cdc import postgres_conn
from binance_cdc.extract import load as pg_load, transforms
from binance_cdc.extract.client import (
    EXCHANGE_INFO_WEIGHT,
    BannedError,
    BinanceClient,
    BinanceError,
    StopRun,
    UnknownSymbolError,
    chunks,
    request_weight,
    symbols_param,
)
from binance_cdc.datasets import Dataset
from binance_cdc.settings import Settings

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_LOCKED = 3
EXIT_BANNED = 4
EXIT_RESTRICTED = 5


class ConfigError(ValueError):
    """Bad symbols or dataset names; nothing was requested."""


@dataclass
class DatasetReport:
    name: str
    fetched: int = 0
    inserted: int = 0
    updated: int = 0
    weight: int = 0
    errors: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    gaps: int = 0

    def log_line(self) -> None:
        level = logging.ERROR if self.errors else logging.INFO
        log.log(
            level,
            "dataset=%s fetched=%d inserted=%d updated=%d weight=%d errors=%d skipped=%s gaps=%d%s",
            self.name, self.fetched, self.inserted, self.updated, self.weight, len(self.errors),
            ",".join(sorted(self.skipped)) or "-", self.gaps,
            (" first_error=%s" % self.errors[0]) if self.errors else "",
        )


@dataclass
class CycleReport:
    exit_code: int = EXIT_OK
    datasets: list[DatasetReport] = field(default_factory=list)
    symbols: list[str] = field(default_factory=list)  # extracted (tradable) symbols
    skipped_symbols: dict[str, str] = field(default_factory=dict)
    weight: int = 0
    message: str = ""

    def dataset(self, name: str) -> DatasetReport:
        return next(d for d in self.datasets if d.name == name)


def validate_symbols(symbols: Sequence[str]) -> tuple[str, ...]:
    bad = transforms.invalid_symbols(symbols)
    if bad:
        raise ConfigError(
            "invalid symbol name(s) %s: Binance symbols match ^[A-Z0-9-_.]{1,20}$ (upper case, no spaces)"
            % ", ".join(repr(s) for s in bad)
        )
    if not symbols:
        raise ConfigError("no symbols given")
    return tuple(dict.fromkeys(symbols))


def tradable_symbols(client: BinanceClient, symbols: Sequence[str]) -> tuple[list[str], dict[str, str], int]:
    """(symbols to extract, skipped symbol -> reason, weight spent) from /api/v3/exchangeInfo."""
    weight = 0
    statuses: dict[str, str] = {}
    for batch in chunks(list(symbols)):
        try:
            answer = client.get(
                "/api/v3/exchangeInfo", {"symbols": symbols_param(batch)}, EXCHANGE_INFO_WEIGHT, "exchangeInfo"
            )
        except UnknownSymbolError:
            log.warning("exchangeInfo: -1121 for %s; listing every symbol once to find the unknown one(s)", batch)
            answer = client.get("/api/v3/exchangeInfo", {}, EXCHANGE_INFO_WEIGHT, "exchangeInfo (all symbols)")
        weight += answer.weight
        statuses.update({s["symbol"]: s.get("status", "?") for s in answer.payload.get("symbols", ())})
    keep, skipped = [], {}
    for symbol in symbols:
        status = statuses.get(symbol)
        if status is None:
            skipped[symbol] = "unknown to Binance (-1121 Invalid symbol)"
        elif status != "TRADING":
            skipped[symbol] = f"status {status}, not TRADING"
        else:
            keep.append(symbol)
    for symbol, why in skipped.items():
        log.warning("symbol %s skipped: %s", symbol, why)
    return keep, skipped, weight


@dataclass
class Fetched:
    symbol: str | None
    payload: Any = None
    server_time: datetime | None = None
    weight: int = 0
    error: BinanceError | None = None


def _fetch_one(client: BinanceClient, dataset: Dataset, symbol: str) -> Fetched:
    params = {"symbol": symbol, **dataset.params}
    try:
        answer = client.get(dataset.endpoint, params, request_weight(dataset), f"{dataset.name} {symbol}")
    except BinanceError as exc:
        return Fetched(symbol, error=exc)
    return Fetched(symbol, answer.payload, answer.server_time, answer.weight)


def fetch(client: BinanceClient, dataset: Dataset, symbols: Sequence[str], pool: ThreadPoolExecutor) -> list[Fetched]:
    if dataset.batched:
        out = []
        for batch in chunks(list(symbols)):
            params = {**dataset.params, "symbols": symbols_param(batch)}
            try:
                answer = client.get(
                    dataset.endpoint, params, request_weight(dataset, len(batch)), f"{dataset.name} {len(batch)} symbols"
                )
            except UnknownSymbolError:
                # A symbol exchangeInfo accepted is refused here: ask one by one so the others still load.
                log.warning("%s: -1121 for the batch; asking symbol by symbol", dataset.name)
                out.extend(pool.map(lambda s: _fetch_one(client, dataset, s), batch))
                continue
            except StopRun:
                raise
            except BinanceError as exc:
                out.append(Fetched(None, error=exc))
                continue
            out.append(Fetched(None, answer.payload, answer.server_time, answer.weight))
        return out
    return list(pool.map(lambda s: _fetch_one(client, dataset, s), symbols))


def load_dataset(conn, dataset: Dataset, fetched: Sequence[Fetched], report: DatasetReport) -> None:
    """Transform what was fetched and load it in one transaction (with trade gaps for recent_trades)."""
    rows: list[tuple] = []
    first_ids: dict[str, int] = {}
    for item in fetched:
        report.weight += item.weight
        if item.error is not None:
            if isinstance(item.error, UnknownSymbolError):
                report.skipped[item.symbol or "?"] = str(item.error)
                log.warning("%s: skipped %s", dataset.name, item.error)
            else:
                report.errors.append(str(item.error))
                log.error("%s: %s", dataset.name, item.error)
            continue
        try:
            out = transforms.transform(dataset, item.payload, symbol=item.symbol, server_time=item.server_time)
        except (transforms.TransformError, KeyError, TypeError) as exc:
            report.errors.append(f"{dataset.name} {item.symbol or ''}: {exc}")
            log.error("%s %s: unusable answer: %s", dataset.name, item.symbol or "", exc)
            continue
        for symbol, why in out.dropped.items():
            report.skipped[symbol] = why
            log.warning("%s: dropped %s: %s", dataset.name, symbol, why)
        if dataset.name == "recent_trades" and out.rows:
            first_ids[item.symbol] = out.rows[0][dataset.column_names.index("trade_id")]
        rows.extend(out.rows)
    report.fetched = len(rows)
    if not rows:
        return
    try:
        if dataset.name == "recent_trades":
            gaps = pg_load.find_trade_gaps(pg_load.last_trade_ids(conn, list(first_ids)), first_ids)
            for gap in gaps:
                log.warning(
                    "recent_trades %s: %d trade(s) missed between id %d and %d (recorded in binance.trade_gaps)",
                    gap.symbol, gap.missed_count, gap.after_trade_id, gap.before_trade_id,
                )
            report.gaps = pg_load.record_trade_gaps(conn, gaps)
        result = pg_load.load(conn, dataset, rows)
        conn.commit()
    except Exception as exc:  # noqa: BLE001 - one dataset's failure must not stop the others
        conn.rollback()
        report.errors.append(f"{dataset.name}: load failed: {exc}")
        log.error("%s: load of %d rows failed and was rolled back: %s", dataset.name, len(rows), exc)
        return
    report.inserted, report.updated = result.inserted, result.updated


def run(
    settings: Settings,
    symbols: Sequence[str] | None = None,
    datasets: Sequence[Dataset] | None = None,
    *,
    base_url: str | None = None,
    client: BinanceClient | None = None,
) -> CycleReport:
    """One cycle; never raises for Binance or per-dataset problems: they end up in the report."""
    from binance_cdc.datasets import DATASETS

    report = CycleReport()
    try:
        symbols = validate_symbols(list(symbols if symbols is not None else settings.binance.symbols))
    except ConfigError as exc:
        log.error("configuration: %s", exc)
        report.exit_code, report.message = EXIT_CONFIG, str(exc)
        return report
    # Cheap batched tickers first: they are the most current data and need only two requests.
    order = ("latest_prices", "daily_ticker", "klines", "order_book", "recent_trades")
    chosen = sorted(datasets if datasets is not None else DATASETS.values(), key=lambda d: order.index(d.name))
    report.datasets = [DatasetReport(d.name) for d in chosen]

    try:
        conn = postgres_conn.app_connection(settings)
    except Exception as exc:  # noqa: BLE001 - psycopg2.OperationalError and friends, reported by name
        report.exit_code = EXIT_FAILED
        report.message = f"cannot connect to Postgres {settings.postgres.host}:{settings.postgres.port}/{settings.postgres.database}: {exc}"
        log.error("%s", report.message)
        return report
    own_client = client is None
    client = client or BinanceClient.from_settings(settings.binance, base_url)
    try:
        if not pg_load.try_run_lock(conn):
            report.exit_code = EXIT_LOCKED
            report.message = (
                f"another extraction run holds advisory lock {pg_load.RUN_LOCK_KEY}; this run exits without writing"
            )
            log.error("%s", report.message)
            return report
        try:
            _cycle(client, conn, symbols, chosen, report, settings.binance.max_workers)
        finally:
            pg_load.release_run_lock(conn)
        for dataset_report in report.datasets:
            dataset_report.log_line()
        log.info(
            "cycle: exit=%d symbols=%d skipped=%s weight=%d",
            report.exit_code, len(report.symbols), ",".join(report.skipped_symbols) or "-", report.weight,
        )
    finally:
        conn.close()
        if own_client:
            client.close()
    return report


def _cycle(client, conn, symbols, chosen, report: CycleReport, max_workers: int) -> None:
    try:
        keep, skipped, weight = tradable_symbols(client, symbols)
    except BinanceError as exc:
        for dataset_report in report.datasets:
            dataset_report.errors.append("not attempted: exchangeInfo failed (see above)")
        if isinstance(exc, StopRun):
            _stop(report, exc)
        else:
            report.exit_code, report.message = EXIT_FAILED, f"exchangeInfo failed, nothing extracted: {exc}"
            log.error("%s", report.message)
        return
    report.skipped_symbols, report.weight = skipped, weight
    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="binance") as pool:
        for dataset, dataset_report in zip(chosen, report.datasets):
            if client.stopped is not None:
                dataset_report.errors.append("not attempted: run stopped (see above)")
                continue
            try:
                fetched = fetch(client, dataset, keep, pool) if keep else []
            except StopRun as exc:
                fetched = []
                dataset_report.errors.append(str(exc))
            load_dataset(conn, dataset, fetched, dataset_report)
            report.weight += dataset_report.weight
    report.symbols = keep
    if client.stopped is not None:
        _stop(report, client.stopped)
    elif any(d.errors for d in report.datasets):
        report.exit_code = EXIT_FAILED
        report.message = "some datasets failed: " + ", ".join(d.name for d in report.datasets if d.errors)


def _stop(report: CycleReport, exc: StopRun) -> None:
    report.exit_code = EXIT_BANNED if isinstance(exc, BannedError) else EXIT_RESTRICTED
    report.message = str(exc)
    log.error("run stopped: %s", exc)
