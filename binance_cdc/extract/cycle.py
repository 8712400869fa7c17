"""One extraction cycle: Binance market data -> Postgres schema `binance`, each dataset in its own commit.

run(settings, symbols, datasets) does, in order:
1. check the symbol names (Binance's '^[A-Z0-9-_.]{1,20}$') before any request (ConfigError names them);
2. take the run lock (pg_try_advisory_lock on a fixed key) for the whole cycle, or exit LOCKED;
3. ask /api/v3/exchangeInfo?symbols=[...] which symbols trade: not TRADING -> skipped with a warning;
   -1121 for the batch -> one exchangeInfo call without symbols (weight 20, whatever the number of
   symbols, where asking one by one costs 20 each) names the unknown ones, which are skipped;
4. per dataset, in `Dataset.load_priority` order: fetch, transform, load in bulk and commit. Batched
   tickers take one request per 100 symbols; the rest go per symbol on BINANCE_MAX_WORKERS threads:
   - a dataset with a time cursor (klines) asks from each symbol's last stored open time on (`startTime`,
     up to 1000 a call), so an outage is backfilled and the open candle updated in place;
   - a dataset with a sequence cursor (trades) walks each symbol's open gaps in binance.trade_gaps, then
     from its last stored id to the present with historicalTrades (`fromId`, 1000 a call), in rounds of one
     page per symbol while the run's share of the weight lasts (RunOptions.sequence_weight, default half
     the minute budget). A symbol that cannot reach the present ends with one request for the latest
     trades and a gap record naming why (budget, not_served, history_limit); a filled gap is closed in
     the transaction that stores its trades. A symbol's first run takes the latest trades (the lookback).
     A host that does not serve historicalTrades (data-api.binance.vision) is known, or detected by its
     404, once per run; the run then samples the latest 1000 trades, with honest gaps.
   A failing symbol or dataset is logged and counted; what was fetched for the others is still committed;
5. log one summary line per dataset (trades: fetched, gap_filled, gaps_closed, open_gaps, still_missing)
   and return the exit code.

418 (banned) and 451 (restricted location) stop the run after committing what was already fetched.
Exit codes: 0 ok, 1 some dataset or symbol failed, 2 configuration error, 3 another run holds the lock,
4 IP banned (418), 5 restricted location (451).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping, Sequence

from binance_cdc import postgres_conn, values
from binance_cdc.datasets import EXCHANGE_INFO, Dataset, in_load_order
from binance_cdc.extract import load as pg_load, transforms
from binance_cdc.extract.client import (
    EXCHANGE_INFO_WEIGHT,
    BannedError,
    BinanceClient,
    BinanceError,
    NotServedError,
    StopRun,
    UnknownSymbolError,
    chunks,
    serves,
    symbols_param,
)
from binance_cdc.settings import Settings
from binance_cdc.stream.retry import LoginRefused, log_in

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
    gaps: int = 0  # gaps opened by this run
    gap_filled: int = 0  # rows of earlier gaps fetched by this run
    gaps_closed: int = 0
    open_gaps: int | None = None  # after this run, for its symbols (None: the dataset has no sequence)
    open_missing: int | None = None  # rows still missing in those open gaps

    def log_line(self) -> None:
        level = logging.ERROR if self.errors else logging.INFO
        gap_part = ""
        if self.open_gaps is not None:
            gap_part = " gap_filled=%d gaps_closed=%d open_gaps=%d still_missing=%d" % (
                self.gap_filled, self.gaps_closed, self.open_gaps, self.open_missing or 0)
        log.log(
            level,
            "dataset=%s fetched=%d inserted=%d updated=%d weight=%d errors=%d skipped=%s gaps=%d%s%s",
            self.name, self.fetched, self.inserted, self.updated, self.weight, len(self.errors),
            ",".join(sorted(self.skipped)) or "-", self.gaps, gap_part,
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

    def by_name(self) -> dict[str, DatasetReport]:
        return {d.name: d for d in self.datasets}


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
                EXCHANGE_INFO, {"symbols": symbols_param(batch)}, EXCHANGE_INFO_WEIGHT, "exchangeInfo"
            )
        except UnknownSymbolError:
            log.warning("exchangeInfo: -1121 for %s; listing every symbol once to find the unknown one(s)", batch)
            answer = client.get(EXCHANGE_INFO, {}, EXCHANGE_INFO_WEIGHT, "exchangeInfo (all symbols)")
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
    """What one symbol (or one batch) of a dataset brought back: its answers, in order, and what they cost."""

    symbol: str | None
    pages: list[tuple[Any, datetime]] = field(default_factory=list)  # (payload, Binance server time)
    weight: int = 0
    error: BinanceError | None = None
    new_gaps: list[pg_load.TradeGap] = field(default_factory=list)
    fills: list[pg_load.GapFill] = field(default_factory=list)
    transformed: list[transforms.Transformed] | None = None  # the pages' rows, once `prepare`d
    transform_error: Exception | None = None

    def add(self, answer) -> None:
        self.pages.append((answer.payload, answer.server_time))
        self.weight += answer.weight

    def prepare(self, dataset: Dataset) -> "Fetched":
        """Transform the pages now, in the fetching thread, so that the CPU work overlaps other requests'
        network waits; an unusable answer is kept as the error load_dataset reports."""
        try:
            self.transformed = [transforms.transform(dataset, payload, symbol=self.symbol, server_time=when)
                                for payload, when in self.pages]
        except (transforms.TransformError, KeyError, TypeError, ValueError) as exc:
            self.transform_error = exc
        return self


def _get(client: BinanceClient, dataset: Dataset, item: Fetched, path: str, params: dict, weight: int) -> list:
    """One request for `item`; its answer is kept and returned (as a list, [] otherwise), its weight counted."""
    answer = client.get(path, params, weight, f"{dataset.name} {item.symbol}")
    item.add(answer)
    return answer.payload if isinstance(answer.payload, list) else []


def _fetch_one(client: BinanceClient, dataset: Dataset, symbol: str) -> Fetched:
    params = {"symbol": symbol, **dataset.params}
    item = Fetched(symbol)
    try:
        _get(client, dataset, item, dataset.endpoint, params, dataset.request_weight(params))
    except BinanceError as exc:
        item.error = exc
    return item.prepare(dataset)


def fetch(client: BinanceClient, dataset: Dataset, symbols: Sequence[str], pool: ThreadPoolExecutor) -> list[Fetched]:
    """The latest answer of `dataset` for every symbol (no cursor: a symbol's first run, or a sample)."""
    if dataset.batched:
        out = []
        for batch in chunks(list(symbols)):
            params = {**dataset.params, "symbols": symbols_param(batch)}
            try:
                answer = client.get(
                    dataset.endpoint, params, dataset.request_weight(params), f"{dataset.name} {len(batch)} symbols"
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
            item = Fetched(None)
            item.add(answer)
            out.append(item.prepare(dataset))
        return out
    return list(pool.map(lambda s: _fetch_one(client, dataset, s), symbols))


# ---- time cursor (klines): from the last stored row on -------------------------------------------------

MAX_TIME_PAGES = 200  # per symbol and run: 200 x 1000 30m candles are 11 years, beyond any outage


def fetch_from_time(client: BinanceClient, dataset: Dataset, symbol: str, last: datetime | None) -> Fetched:
    """Pages from the last stored row (inclusive, so an open one is asked again) to the present."""
    if last is None:
        return _fetch_one(client, dataset, symbol)
    cursor = dataset.cursor
    at = dataset.column(cursor.column).api_field
    item = Fetched(symbol)
    start = values.to_epoch_ms(last)
    try:
        for _ in range(MAX_TIME_PAGES):
            params = {"symbol": symbol, **dataset.params, cursor.param: start, "limit": cursor.limit}
            page = _get(client, dataset, item, cursor.endpoint, params, cursor.weight.charge(params))
            if len(page) < cursor.limit:
                break
            start = page[-1][at]  # the next page starts with this page's last row (deduplicated on load)
    except BinanceError as exc:
        item.error = exc
    return item.prepare(dataset)


# ---- sequence cursor (trades): every id, gaps named and filled ------------------------------------------


class WeightPool:
    """The run's weight for sequence-cursor pages, shared by the symbols' walks (thread-safe)."""

    def __init__(self, weight: int) -> None:
        self.left = max(0, weight)
        self._lock = threading.Lock()

    def take(self, weight: int) -> bool:
        with self._lock:
            if self.left < weight:
                return False
            self.left -= weight
            return True


@dataclass
class _Task:
    next_id: int
    before: int | None  # exclusive end (a gap's before_trade_id); None: up to the present
    gap: pg_load.TradeGap | None = None
    filled: int = 0


class TradeWalk:
    """One symbol's way through its open gaps (oldest first), then from its last stored id to the present,
    one page per step, so that the run's weight is shared fairly between symbols.

    A symbol with nothing stored asks the latest trades (the lookback) once. When the weight pool is empty,
    or the host does not serve the cursor endpoint, the walk ends with one request for the latest trades:
    the present is stored, and the trades between the walk's last id and the first latest one are recorded
    as a gap with the reason. A gap being filled records how far it got, and is closed when it is complete.
    """

    def __init__(self, client: BinanceClient, dataset: Dataset, symbol: str, last: int | None,
                 gaps: Sequence[pg_load.TradeGap], lookback: int) -> None:
        self.client, self.dataset, self.cursor = client, dataset, dataset.cursor
        self.symbol = symbol
        self.item = Fetched(symbol)
        self.head = last  # the highest id stored or fetched on the way to the present
        self.lookback = lookback
        self.tasks = [_Task(g.next_id, g.before_trade_id, g) for g in gaps]
        if last is not None:
            self.tasks.append(_Task(last + 1, None))
        self.done = False

    def step(self, pool: WeightPool, served: dict) -> None:
        try:
            if self.head is None:
                self._latest(None)
            elif not served["cursor"]:
                self._latest(pg_load.GAP_NOT_SERVED)
            elif not pool.take(self.cursor.weight.one):
                self._latest(pg_load.GAP_BUDGET)
            else:
                self._page(served)
        except BinanceError as exc:
            # A StopRun (418/451) too: the client refuses every later request, so all walks end here and
            # what they fetched is still loaded.
            self.item.error, self.done = exc, True
        finally:
            if self.done:
                self._record_partial_fills()
                self.item.prepare(self.dataset)

    def _page(self, served: dict) -> None:
        task = self.tasks[0]
        params = {"symbol": self.symbol, self.cursor.param: task.next_id, "limit": self.cursor.limit}
        try:
            page = _get(self.client, self.dataset, self.item, self.cursor.endpoint, params,
                        self.cursor.weight.charge(params))
        except NotServedError as exc:
            if served["cursor"]:
                served["cursor"] = False
                log.warning("%s: %s; this run falls back to the latest trades and records what they miss as gaps",
                            self.dataset.name, exc)
            self._latest(pg_load.GAP_NOT_SERVED)
            return
        ids = [t["id"] for t in page if isinstance(t, dict) and isinstance(t.get("id"), int)]
        if ids and ids[0] > task.next_id:
            self._history_limit(task, ids[0])
        kept = [i for i in ids if i >= task.next_id and (task.before is None or i < task.before)]
        task.filled += len(kept)
        if kept:
            task.next_id = kept[-1] + 1
            if task.before is None:
                self.head = max(self.head, kept[-1])
        if task.before is not None:
            complete = task.next_id >= task.before or len(kept) < len(ids) or not ids
        else:
            complete = len(page) < self.cursor.limit  # a short page: this is the present
        if complete:
            if task.gap is not None:
                self.item.fills.append(pg_load.GapFill(self.symbol, task.gap.after_trade_id, task.filled, True))
            self.tasks.remove(task)
            self.done = not self.tasks

    def _history_limit(self, task: _Task, first: int) -> None:
        """Binance answered from a later id than asked: the ids before it are no longer served."""
        end = first if task.before is None else min(first, task.before)
        log.warning("%s %s: ids %d..%d are no longer served by Binance (gap reason %s)", self.dataset.name,
                    self.symbol, task.next_id, end - 1, pg_load.GAP_HISTORY_LIMIT)
        if task.gap is None:
            self.item.new_gaps.append(pg_load.TradeGap(
                self.symbol, task.next_id - 1, end, end - task.next_id, pg_load.GAP_HISTORY_LIMIT))
        else:
            # The gap stays open under its new reason, and later runs stop asking for it.
            self.item.fills.append(pg_load.GapFill(
                self.symbol, task.gap.after_trade_id, task.filled, False, pg_load.GAP_HISTORY_LIMIT))
            task.gap, task.filled = None, 0
        task.next_id = end

    def _record_partial_fills(self) -> None:
        for task in self.tasks:
            if task.gap is not None and task.filled:
                self.item.fills.append(pg_load.GapFill(self.symbol, task.gap.after_trade_id, task.filled, False))
        self.tasks = []

    def _latest(self, reason: str | None) -> None:
        """The latest trades: a first run's lookback, or the end of a walk that cannot reach the present."""
        self.done = True
        params = {"symbol": self.symbol, "limit": self.lookback if self.head is None else self.cursor.limit}
        page = _get(self.client, self.dataset, self.item, self.dataset.endpoint, params,
                    self.dataset.request_weight(params))
        ids = [t["id"] for t in page if isinstance(t, dict) and isinstance(t.get("id"), int)]
        if reason is not None and ids and ids[0] > self.head + 1:
            gap = pg_load.TradeGap(self.symbol, self.head, ids[0], ids[0] - self.head - 1, reason)
            self.item.new_gaps.append(gap)
            log.warning("%s %s: %d trade(s) between id %d and %d not fetched (%s); recorded in binance.trade_gaps",
                        self.dataset.name, self.symbol, gap.missed_count, gap.after_trade_id, gap.before_trade_id,
                        reason)


def fetch_sequence(client: BinanceClient, dataset: Dataset, symbols: Sequence[str], pool: ThreadPoolExecutor,
                   last: Mapping[str, int], gaps: Mapping[str, Sequence[pg_load.TradeGap]], weight: int,
                   lookback: int) -> list[Fetched]:
    """Every symbol's rows from its open gaps and its last stored id to the present, in rounds of one page
    per symbol while `weight` lasts (plus one latest-answer request for each symbol that cannot finish)."""
    served = {"cursor": serves(client.base_url, dataset.cursor.endpoint)}
    if not served["cursor"]:
        log.warning("%s: %s does not serve %s; fetching the latest trades and recording what they miss as gaps",
                    dataset.name, client.base_url, dataset.cursor.endpoint)
    walks = [TradeWalk(client, dataset, s, last.get(s), gaps.get(s, ()), lookback) for s in symbols]
    # Each walk may end with one latest-answer request: that weight is kept out of the page pool.
    pages = WeightPool(weight - len(walks) * dataset.weight.one)
    while True:
        active = [w for w in walks if not w.done]
        if not active:
            break
        list(pool.map(lambda w: w.step(pages, served), active))
    return [w.item for w in walks]


@dataclass(frozen=True)
class RunOptions:
    """Per-run knobs of the cursors (extraction_script.py flags)."""

    sequence_weight: int | None = None  # weight for sequence-cursor pages; None: half the run's minute budget
    lookback: int | None = None  # a symbol's first run: how many latest trades (1..1000); None: Dataset.params


def fetch_dataset(client: BinanceClient, conn, dataset: Dataset, symbols: Sequence[str], pool: ThreadPoolExecutor,
                  options: RunOptions) -> list[Fetched]:
    """Fetch by the dataset's cursor (reading where each symbol stands), or its latest answer."""
    cursor = dataset.cursor
    if cursor is None or dataset.batched or not symbols:
        return fetch(client, dataset, symbols, pool)
    last = pg_load.last_values(conn, dataset, symbols)
    gaps = pg_load.open_trade_gaps(conn, symbols) if cursor.kind == "sequence" else {}
    conn.commit()  # only reads: nothing to keep, and no transaction left open while fetching
    if cursor.kind == "time":
        return list(pool.map(lambda s: fetch_from_time(client, dataset, s, last.get(s)), symbols))
    weight = options.sequence_weight if options.sequence_weight is not None else client.budget.limit // 2
    lookback = min(options.lookback or int(dataset.params.get("limit", cursor.limit)), cursor.limit)
    return fetch_sequence(client, dataset, symbols, pool, last, gaps, weight, lookback)


def load_dataset(conn, dataset: Dataset, fetched: Sequence[Fetched], report: DatasetReport) -> None:
    """Transform what was fetched and load it in one transaction, with the gaps it opens and advances."""
    rows: list[tuple] = []
    new_gaps: list[pg_load.TradeGap] = []
    fills: list[pg_load.GapFill] = []
    for item in fetched:
        report.weight += item.weight
        if item.error is not None:
            if isinstance(item.error, UnknownSymbolError):
                report.skipped[item.symbol or "?"] = str(item.error)
                log.warning("%s: skipped %s", dataset.name, item.error)
            else:
                report.errors.append(str(item.error))
                log.error("%s: %s", dataset.name, item.error)
        if item.transformed is None and item.transform_error is None:
            item.prepare(dataset)
        if item.transform_error is not None:
            report.errors.append(f"{dataset.name} {item.symbol or ''}: {item.transform_error}")
            log.error("%s %s: unusable answer: %s", dataset.name, item.symbol or "", item.transform_error)
            continue
        outs = item.transformed
        for out in outs:
            for symbol, why in out.dropped.items():
                report.skipped[symbol] = why
                log.warning("%s: dropped %s: %s", dataset.name, symbol, why)
            rows.extend(out.rows)
        # Pages fetched before an error are kept (and loaded); the gaps they name travel with them.
        new_gaps.extend(item.new_gaps)
        fills.extend(item.fills)
    report.fetched = len(rows)
    if not rows and not new_gaps and not fills:
        return
    try:
        pg_load.record_trade_gaps(conn, new_gaps)
        pg_load.apply_gap_fills(conn, fills)
        result = pg_load.load(conn, dataset, rows)
        conn.commit()
    except Exception as exc:  # noqa: BLE001 - one dataset's failure must not stop the others
        conn.rollback()
        report.errors.append(f"{dataset.name}: load failed: {exc}")
        log.error("%s: load of %d rows failed and was rolled back: %s", dataset.name, len(rows), exc)
        return
    report.inserted, report.updated = result.inserted, result.updated
    report.gaps = len(new_gaps)
    report.gap_filled = sum(f.filled for f in fills)
    report.gaps_closed = sum(1 for f in fills if f.closed)


def run(
    settings: Settings,
    symbols: Sequence[str] | None = None,
    datasets: Sequence[Dataset] | None = None,
    *,
    base_url: str | None = None,
    client: BinanceClient | None = None,
    options: RunOptions = RunOptions(),
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
    # Dataset.load_priority: the cheap batched tickers first, the most current data in two requests.
    chosen = in_load_order(datasets if datasets is not None else DATASETS.values())
    report.datasets = [DatasetReport(d.name) for d in chosen]

    try:
        conn = log_in(lambda: postgres_conn.app_connection(settings), "Postgres", "postgres_app",
                      settings.postgres_app.user)
    except LoginRefused as exc:
        report.exit_code, report.message = EXIT_CONFIG, str(exc)
        log.error("%s", report.message)
        return report
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
            _cycle(client, conn, symbols, chosen, report, settings.binance.max_workers, options)
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


def _cycle(client, conn, symbols, chosen, report: CycleReport, max_workers: int, options: RunOptions) -> None:
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
                fetched = fetch_dataset(client, conn, dataset, keep, pool, options) if keep else []
            except StopRun as exc:
                fetched = []
                dataset_report.errors.append(str(exc))
            except Exception as exc:  # noqa: BLE001 - e.g. Postgres gone while reading cursors: this dataset only
                conn.rollback()
                fetched = []
                dataset_report.errors.append(f"{dataset.name}: {exc.__class__.__name__}: {exc}")
                log.error("%s: not fetched: %s", dataset.name, exc)
            load_dataset(conn, dataset, fetched, dataset_report)
            if dataset.sequence_column is not None and keep:
                try:
                    dataset_report.open_gaps, dataset_report.open_missing = pg_load.open_gap_totals(conn, keep)
                    conn.commit()
                except Exception as exc:  # noqa: BLE001 - the counts are a report, not the data
                    conn.rollback()
                    log.warning("%s: could not count open gaps: %s", dataset.name, exc)
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
