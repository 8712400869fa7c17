"""confluent-kafka (librdkafka) client settings from the settings object: local PLAINTEXT or Confluent
Cloud SASL_SSL with the cluster API key. Needs settings group "kafka". Holds the secret: never log it."""

from __future__ import annotations


def client_conf(settings) -> dict:
    conf = {"bootstrap.servers": settings.kafka_bootstrap_servers}
    if settings.kafka_security_protocol == "SASL_SSL":
        conf.update({"security.protocol": "SASL_SSL", "sasl.mechanisms": "PLAIN",
                     "sasl.username": settings.kafka_sasl_username,
                     "sasl.password": settings.secret("kafka_sasl_password")})
    return conf
