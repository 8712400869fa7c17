"""The zip the streaming job ships to its executors (job.package_zip) imports on a clean interpreter.

A cluster's executors have no checkout: the zip alone must serve every module the tasks unpickle. The check
runs a fresh `python -I` (no PYTHONPATH, no user site, no script dir) in an empty directory outside the
checkout, with only the zip on sys.path. Needs neither Spark nor any service.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile

from binance_cdc.stream.job import package_zip

MODULES = ("binance_cdc.settings", "binance_cdc.stream.debezium", "binance_cdc.stream.sink",
           "binance_cdc.stream.job", "binance_cdc.datasets", "binance_cdc.kafka_client")

PROBE = """
import importlib, sys
zip_path = sys.argv[1]
sys.path.insert(0, zip_path)
for name in sys.argv[2:]:
    module = importlib.import_module(name)
    where = getattr(module, "__file__", None) or str(list(module.__path__))
    assert where.startswith(zip_path), (name, where)
    print(name, "from", where)
"""


def test_package_zip_imports_alone_on_a_clean_interpreter(tmp_path):
    ship, elsewhere = tmp_path / "ship", tmp_path / "elsewhere"
    ship.mkdir()
    elsewhere.mkdir()
    zip_path = package_zip(ship)
    done = subprocess.run([sys.executable, "-I", "-c", PROBE, str(zip_path), *MODULES], cwd=elsewhere,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(" from ") == len(MODULES)


def test_package_zip_holds_every_module_of_the_package(tmp_path):
    from binance_cdc.settings import PROJECT_ROOT

    names = set(zipfile.ZipFile(package_zip(tmp_path)).namelist())
    sources = {str(p.relative_to(PROJECT_ROOT)) for p in (PROJECT_ROOT / "binance_cdc").rglob("*.py")}
    assert sources <= names
