"""Shared fixtures. Unit tests need nothing; integration tests use the real local stack that
`make test` brings up (make up), configured from .env like the scripts themselves."""

from __future__ import annotations

import pytest

from binance_cdc.settings import load_dotenv_file, load_settings


@pytest.fixture(scope="session")
def settings():
    load_dotenv_file()
    return load_settings()
