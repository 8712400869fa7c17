"""Symbol names are checked before any request; the error names every bad one."""

from __future__ import annotations

import pytest

from binance_cdc.datasets import DEFAULT_SYMBOLS
from binance_cdc.extract.cycle import ConfigError, validate_symbols
from binance_cdc.extract.transforms import invalid_symbols


def test_default_symbols_are_the_original_ten_and_valid():
    assert len(DEFAULT_SYMBOLS) == 10 and "MATICUSDT" in DEFAULT_SYMBOLS
    assert validate_symbols(DEFAULT_SYMBOLS) == DEFAULT_SYMBOLS


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
