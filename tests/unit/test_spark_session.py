"""The pure parts of the SparkSession factory: which listeners a local master keeps on loopback."""

from __future__ import annotations

from binance_cdc.stream.spark_session import loopback_conf

LOOP = {"spark.driver.bindAddress": "127.0.0.1", "spark.driver.host": "127.0.0.1", "spark.ui.enabled": "false"}


def test_a_local_master_keeps_driver_and_ui_off_the_network():
    assert loopback_conf("local[*]", {}, {}) == LOOP
    assert loopback_conf("local[2,3]", {"spark.master": "local[2,3]"}, {}) == LOOP


def test_a_cluster_master_is_left_alone():
    # executors on other hosts must reach the driver
    assert loopback_conf("spark://10.0.0.5:7077", {}, {}) == {}


def test_spark_local_ip_and_the_users_settings_win():
    assert loopback_conf("local[*]", {}, {"SPARK_LOCAL_IP": "127.0.0.1"}) == {}
    mine = {"spark.driver.host": "10.1.1.1", "spark.ui.enabled": "true"}
    assert loopback_conf("local[*]", mine, {}) == {"spark.driver.bindAddress": "127.0.0.1"}
