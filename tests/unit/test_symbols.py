"""Symbol names are checked before any request; the error names every bad one."""

from __future__ import annotations

import pytest

from binance_cdc.datasets import DEFAULT_SYMBOLS
from binance_cdc.extract.cycle import ConfigError, validate_symbols
from binance_cdc.extract.transforms import invalid_symbols
from binance_cdc.settings import load_settings


def test_the_symbols_a_run_extracts_by_default_are_the_original_ten_and_valid():
    """What production reads: BINANCE_SYMBOLS unset -> settings.binance.symbols."""
    symbols = load_settings("binance", env={}).binance.symbols
    assert symbols == DEFAULT_SYMBOLS
    assert len(symbols) == 10 and "MATICUSDT" in symbols
    assert validate_symbols(symbols) == symbols


def test_the_simulator_knows_every_default_symbol_and_serves_them_by_default():
    from simulator import BinanceSimulator
    from simulator.symbols import KNOWN

    assert set(KNOWN) == set(DEFAULT_SYMBOLS)  # real tick/lot sizes for each default symbol
    assert BinanceSimulator(start_ms=1_700_000_000_000, warm=False).symbols == DEFAULT_SYMBOLS


@pytest.mark.parametrize("good", ["BTCUSDT", "1000SATSUSDT", "BTC-USD", "A_B.C", "X" * 20])
def test_valid_names(good):
    assert invalid_symbols([good]) == []


@pytest.mark.parametrize("bad", ["btcusdt", "BTC USDT", "", "X" * 21, "BTC/USDT", 'BTC"', "BTCUSDT\n", "ÄBC"])
def test_invalid_names(bad):
    assert invalid_symbols([bad]) == [bad]


def test_config_error_names_all_invalid_symbols():
    with pytest.raises(ConfigError) as info:
        validate_symbols(["BTCUSDT", "ethusdt", "BNB USDT"])
    assert "'ethusdt'" in str(info.value) and "'BNB USDT'" in str(info.value)
    assert "BTCUSDT'" not in str(info.value)


def test_duplicates_collapse_keeping_order_and_empty_is_an_error():
    assert validate_symbols(["ETHUSDT", "BTCUSDT", "ETHUSDT"]) == ("ETHUSDT", "BTCUSDT")
    with pytest.raises(ConfigError):
        validate_symbols([])
