"""SparkSession factory for the streaming job: local jars only, UTC.

`build_session(app_name)` puts every jar of .local/lib/spark/ (the Kafka source, resolved by `make
setup`) on `spark.jars` by absolute path and points Ivy at an empty private directory, so no Maven/Ivy resolution ever
happens (there is no network for it). `master=None` leaves the master to spark-submit (or Spark's default);
Kafka security options (Confluent Cloud) are the caller's, on the Kafka source itself.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Mapping

from binance_cdc.settings import PROJECT_ROOT

log = logging.getLogger(__name__)

SPARK_LIB = PROJECT_ROOT / ".local" / "lib" / "spark"
IVY_DIR = PROJECT_ROOT / ".local" / "spark-ivy"
SHUFFLE_PARTITIONS = 4
# Two cores, and up to 3 attempts per task: a transient Cassandra timeout is retried before the query fails.
DEFAULT_MASTER = "local[2,3]"


def launched_by_spark_submit() -> bool:
    """spark-submit starts the JVM first and hands pyspark its gateway; its --master then applies."""
    return "PYSPARK_GATEWAY_PORT" in os.environ or "--master" in os.environ.get("PYSPARK_SUBMIT_ARGS", "")


def local_jars(lib_dir: Path = SPARK_LIB) -> list[str]:
    """Absolute paths of the extra jars, sorted; an empty or absent folder is an error naming it."""
    jars = sorted(str(p.resolve()) for p in Path(lib_dir).glob("*.jar"))
    if not jars:
        raise FileNotFoundError(f"no jars in {lib_dir}: run `make setup` (stack/maven/spark resolves them)")
    return jars


def session_conf(app_name: str, master: str | None = None,
                 extra_conf: Mapping[str, str] | None = None) -> dict[str, str]:
    """The Spark configuration build_session applies (pure, so it can be inspected and tested)."""
    conf = {
        "spark.app.name": app_name,
        "spark.jars": ",".join(local_jars()),
        "spark.jars.ivy": str(IVY_DIR),
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(SHUFFLE_PARTITIONS),
        "spark.ui.showConsoleProgress": "false",
    }
    if master or not launched_by_spark_submit():
        conf["spark.master"] = master or DEFAULT_MASTER
    conf.update(extra_conf or {})
    return conf


def build_session(app_name: str, master: str | None = None,
                  extra_conf: Mapping[str, str] | None = None):
    """A SparkSession (getOrCreate: an already running session in this process is reused as is)."""
    from pyspark.sql import SparkSession

    conf = session_conf(app_name, master, extra_conf)
    # Ivy must find nothing to resolve: an empty private dir, never ~/.ivy2 with stale artifacts.
    IVY_DIR.mkdir(parents=True, exist_ok=True)
    builder = SparkSession.builder
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    log.info("spark: session %s on %s with %d local jars", app_name, session.sparkContext.master,
             len(conf["spark.jars"].split(",")))
    return session
