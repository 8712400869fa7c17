"""SparkSession factory for the streaming job: local jars only, UTC.

`build_session(app_name)` puts every jar of .local/lib/spark/ (the Kafka source, resolved by `make
setup`) on `spark.jars` by absolute path and points Ivy at an empty private directory, so no Maven/Ivy resolution ever
happens (there is no network for it). `master=None` leaves the master to spark-submit (or Spark's default);
Kafka security options (Confluent Cloud) are the caller's, on the Kafka source itself.

Under spark-submit the driver JVM is already running when this code sets `spark.jars`: the executors still
fetch the jars (the SparkContext is created here, with that conf), but the driver's class loader was built
from spark-submit's own arguments, so `format("kafka")` fails with "Failed to find data source: kafka" unless
the user passed `--jars`. `build_session` therefore adds the same local jars to the driver's class loader
when the Kafka source is not already loadable, so `spark-submit spark_streaming.py` works without `--jars`.
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
LOOPBACK = "127.0.0.1"


def launched_by_spark_submit() -> bool:
    """spark-submit starts the JVM first and hands pyspark its gateway; its --master then applies."""
    return "PYSPARK_GATEWAY_PORT" in os.environ or "--master" in os.environ.get("PYSPARK_SUBMIT_ARGS", "")


def local_jars(lib_dir: Path = SPARK_LIB) -> list[str]:
    """Absolute paths of the extra jars, sorted; an empty or absent folder is an error naming it."""
    jars = sorted(str(p.resolve()) for p in Path(lib_dir).glob("*.jar"))
    if not jars:
        raise FileNotFoundError(f"no jars in {lib_dir}: run `make setup` (stack/maven/spark resolves them)")
    return jars


KAFKA_PROVIDER = "org.apache.spark.sql.kafka010.KafkaSourceProvider"


def kafka_source_loadable(jvm, loader) -> bool:
    try:
        jvm.java.lang.Class.forName(KAFKA_PROVIDER, False, loader)
        return True
    except Exception:  # py4j wraps the ClassNotFoundException
        return False


def add_jars_to_driver(session, jars: list[str]) -> bool:
    """Make the Kafka source visible to a driver JVM that spark-submit started without it.

    spark-submit runs the driver with its class loader (a MutableURLClassLoader, whose addURL is public) as
    the context class loader of the threads that serve pyspark; DataSource lookup goes through that loader,
    so adding the jars to it is what `--jars` would have done. Returns True when jars were added, False when
    the source was already there (e.g. the user passed --jars: nothing is added twice)."""
    jvm = session.sparkContext._jvm
    loader = jvm.java.lang.Thread.currentThread().getContextClassLoader()
    if kafka_source_loadable(jvm, loader):
        return False
    try:
        for jar in jars:
            loader.addURL(jvm.java.io.File(jar).toURI().toURL())
    except Exception as exc:  # py4j: a class loader without a public addURL
        raise RuntimeError(f"the driver's class loader {loader.getClass().getName()} cannot take jars ({exc}); "
                           'pass them to spark-submit: --jars "$(ls .local/lib/spark/*.jar | paste -sd,)"') from exc
    if not kafka_source_loadable(jvm, loader):
        raise RuntimeError(f"{KAFKA_PROVIDER} still missing after adding {len(jars)} jars from {SPARK_LIB}: "
                           "run `make setup`")
    log.info("spark: added %d local jars to the driver's class loader (spark-submit had no --jars)", len(jars))
    return True


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


def submitted_conf() -> dict[str, str]:
    """The spark.* settings spark-submit gave the running driver JVM (its --master, --conf, defaults)."""
    from pyspark import SparkContext

    SparkContext._ensure_initialized()  # attaches to spark-submit's gateway; starts nothing
    props = SparkContext._jvm.java.lang.System.getProperties()
    return {k: props.getProperty(k) for k in props.stringPropertyNames() if k.startswith("spark.")}


def loopback_conf(master: str, submitted: Mapping[str, str], env: Mapping[str, str]) -> dict[str, str]:
    """A local master needs no listener beyond 127.0.0.1, but Spark binds its driver (RPC, block manager)
    to the host's address and its UI to every interface. The UI's address comes only from SPARK_LOCAL_IP,
    read when the JVM starts; under spark-submit that has happened already, so the UI is turned off instead.
    A master that is not local is left alone (a cluster's executors must reach the driver); SPARK_LOCAL_IP
    or the user's own settings win."""
    if not master.startswith("local") or env.get("SPARK_LOCAL_IP"):
        return {}
    conf = {key: LOOPBACK for key in ("spark.driver.bindAddress", "spark.driver.host") if key not in submitted}
    if "spark.ui.enabled" not in submitted:
        conf["spark.ui.enabled"] = "false"
    return conf


def build_session(app_name: str, master: str | None = None,
                  extra_conf: Mapping[str, str] | None = None):
    """A SparkSession (getOrCreate: an already running session in this process is reused as is)."""
    from pyspark.sql import SparkSession

    conf = session_conf(app_name, master, extra_conf)
    if launched_by_spark_submit():
        submitted = submitted_conf()
        loopback = loopback_conf(conf.get("spark.master") or submitted.get("spark.master", "local[*]"),
                                 {**submitted, **conf}, os.environ)
        if loopback.get("spark.ui.enabled") == "false":
            log.info("spark: UI off (local master under spark-submit; SPARK_LOCAL_IP=127.0.0.1 gives a "
                     "loopback-only UI)")
        conf.update(loopback)
    elif conf["spark.master"].startswith("local"):
        # Read by the JVM pyspark is about to start: driver and UI then listen on loopback only.
        os.environ.setdefault("SPARK_LOCAL_IP", LOOPBACK)
    # Ivy must find nothing to resolve: an empty private dir, never ~/.ivy2 with stale artifacts.
    IVY_DIR.mkdir(parents=True, exist_ok=True)
    builder = SparkSession.builder
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    if launched_by_spark_submit():
        add_jars_to_driver(session, conf["spark.jars"].split(","))
    log.info("spark: session %s on %s with %d local jars", app_name, session.sparkContext.master,
             len(conf["spark.jars"].split(",")))
    return session
