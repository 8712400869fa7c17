"""The two Debezium configs (self-managed Connect, Confluent Cloud V2) agree with each other, with the
dataset description and with the publication in sql/, hold no secret, and render completely."""

from __future__ import annotations

import json
import re

import pytest

from binance_cdc import datasets
from binance_cdc.settings import PROJECT_ROOT, SettingsError
from connectors import confluent

LOCAL = PROJECT_ROOT / "connectors" / "debezium-postgres-local.json"
CLOUD = confluent.TEMPLATE

# Property names of PostgresCdcSourceV2 as documented by Confluent (connector page's property table and its
# configuration example; the CLI reference for the {"name", "config"} file). Confluent rejects unknown names,
# so a new property has to be checked there before it is added here.
DOCUMENTED_V2 = {
    "connector.class", "name", "kafka.auth.mode", "kafka.api.key", "kafka.api.secret",
    "kafka.service.account.id", "database.hostname", "database.port", "database.user", "database.password",
    "database.dbname", "database.sslmode", "topic.prefix", "table.include.list", "table.exclude.list",
    "plugin.name", "slot.name", "publication.name", "publication.autocreate.mode", "snapshot.mode",
    "output.data.format", "output.key.format", "after.state.only", "decimal.handling.mode",
    "time.precision.mode", "tombstones.on.delete", "heartbeat.interval.ms", "tasks.max",
}
MUST_AGREE = (
    "topic.prefix", "plugin.name", "slot.name", "publication.name", "publication.autocreate.mode",
    "snapshot.mode", "decimal.handling.mode", "time.precision.mode", "tombstones.on.delete",
    "heartbeat.interval.ms", "database.hostname", "database.port", "database.dbname", "database.user",
    "database.sslmode",
)


def config(path):
    return json.loads(path.read_text())["config"]


def tables(cfg):
    return set(cfg["table.include.list"].split(","))


def test_both_configs_capture_exactly_the_five_datasets():
    expected = {f"binance.{name}" for name in datasets.DATASETS}
    assert tables(config(LOCAL)) == expected
    assert tables(config(CLOUD)) == expected


def test_publication_sql_lists_the_same_tables():
    sql = (PROJECT_ROOT / "sql" / "04_publication.sql").read_text()
    listed = set(re.findall(r"binance\.[a-z_]+", sql.split("SET TABLE", 1)[1]))
    assert listed == {f"binance.{name}" for name in datasets.DATASETS}


@pytest.mark.parametrize("key", MUST_AGREE)
def test_configs_agree(key):
    assert config(LOCAL)[key] == config(CLOUD)[key]


def test_modes_keep_data_exact_and_deletes_visible():
    for cfg in (config(LOCAL), config(CLOUD)):
        assert cfg["decimal.handling.mode"] == "string"  # never base64 bytes or doubles
        assert cfg["time.precision.mode"] == "adaptive_time_microseconds"
        assert cfg["tombstones.on.delete"] == "true"
        assert int(cfg["heartbeat.interval.ms"]) > 0  # an idle slot must not hold WAL forever
        assert cfg["plugin.name"] == "pgoutput"


def test_cloud_config_uses_only_documented_properties():
    assert set(config(CLOUD)) <= DOCUMENTED_V2, set(config(CLOUD)) - DOCUMENTED_V2
    assert config(CLOUD)["connector.class"] == "PostgresCdcSourceV2"
    assert config(CLOUD)["after.state.only"] == "false"  # the stream needs the whole envelope


def test_no_secret_is_stored_in_either_file():
    for cfg in (config(LOCAL), config(CLOUD)):
        for key, value in cfg.items():
            if any(word in key for word in ("password", "secret", "api.key")):
                assert value.startswith("${"), f"{key} holds a literal value"


def test_render_fills_every_placeholder_and_escapes_values():
    text = CLOUD.read_text()
    values = {name: f"v-{name}" for name in confluent.placeholders(text)}
    values["PG_REPLICATION_PASSWORD"] = 'pa"ss\\word'
    rendered = confluent.render(values)["config"]
    assert rendered["database.password"] == 'pa"ss\\word'
    assert "${" not in json.dumps(rendered)


def test_render_names_every_missing_variable():
    values = {name: "x" for name in confluent.placeholders(CLOUD.read_text())}
    values["KAFKA_SASL_PASSWORD"] = ""
    del values["PG_HOST"]
    with pytest.raises(SettingsError) as err:
        confluent.render(values)
    assert "KAFKA_SASL_PASSWORD" in str(err.value) and "PG_HOST" in str(err.value)
