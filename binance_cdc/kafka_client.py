"""confluent-kafka (librdkafka) client settings: local PLAINTEXT or Confluent Cloud SASL_SSL with the
cluster API key. The result holds the secret: never log it."""

from __future__ import annotations

from binance_cdc.settings import KafkaSettings


def client_conf(kafka: KafkaSettings) -> dict:
    conf = {"bootstrap.servers": kafka.bootstrap_servers}
    if kafka.security_protocol == "SASL_SSL":
        conf.update({"security.protocol": "SASL_SSL", "sasl.mechanisms": "PLAIN",
                     "sasl.username": kafka.sasl_username,
                     "sasl.password": kafka.sasl_password.reveal()})
    return conf


def topics(kafka: KafkaSettings) -> list[str]:
    """The five Debezium topics, `<prefix>.binance.<table>`, in dataset order."""
    from binance_cdc.datasets import DATASETS

    return [f"{kafka.topic_prefix}.{d.topic_suffix}" for d in DATASETS.values()]
