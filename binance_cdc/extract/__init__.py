"""Stage 1, extraction: Binance REST (client) -> rows (transforms) -> Postgres `binance` (load), one cycle (cycle)."""
