"""Shared fixtures. Unit tests need nothing; integration tests use the real local stack that
`make test` brings up (make up), configured from .env like the scripts themselves."""

from __future__ import annotations

import pytest

from binance_cdc.settings import load_dotenv_file, load_settings


@pytest.fixture(scope="session")
def settings():
    load_dotenv_file()
    return load_settings()


def pytest_collection_modifyitems(config, items):
    """The chaos suite kills and restarts the stack's services: it runs after every other test, so a failed
    recovery cannot break them (a stable sort keeps every other order)."""
    items.sort(key=lambda item: item.get_closest_marker("chaos") is not None)
