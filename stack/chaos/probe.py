"""End-to-end lag as the chaos suite measures it: the age, read from Cassandra, of the probe row the load
upserts in Postgres at every step (latest_prices `CHAOSPROBE`, observed_at = the writer's clock).

While the pipeline keeps up the age is the stream's latency (a few seconds); when any hop stops it grows.
`lag()` is None while Cassandra cannot be read.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone

from stack.chaos.load import PROBE

log = logging.getLogger("chaos.probe")


class Probe:
    def __init__(self, settings) -> None:
        self.settings = settings
        self._session = None

    def session(self):
        if self._session is None:
            from binance_cdc.serve.cassandra_read import reader_session

            self._session = reader_session(self.settings.cassandra, self.settings.cassandra_reader, timeout=5)
        return self._session

    def lag(self) -> float | None:
        try:
            row = self.session().execute(
                f"SELECT observed_at FROM {self.settings.cassandra.keyspace}.latest_prices WHERE symbol = %s",
                (PROBE,), timeout=3).one()
        except Exception as exc:  # noqa: BLE001 - Cassandra down or restarting: no reading
            log.debug("probe: %s", exc)
            return None
        if row is None:
            return None
        observed = row[0].replace(tzinfo=timezone.utc)
        return (datetime.now(timezone.utc) - observed).total_seconds()

    def close(self) -> None:
        if self._session is not None:
            self._session.cluster.shutdown()
            self._session = None
