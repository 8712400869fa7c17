"""confluent-kafka (librdkafka) client settings: local PLAINTEXT or Confluent Cloud SASL_SSL with the
cluster API key. The result holds the secret: never log it.

Under SASL_SSL the broker's certificate is verified and must name the broker
(`ssl.endpoint.identification.algorithm=https`, said explicitly although it is librdkafka's default), against
KAFKA_SSL_CA_FILE when set, else the system's CA store (Confluent Cloud's certificates chain to a public CA).
"""

from __future__ import annotations

from binance_cdc.settings import KafkaSettings


def client_conf(kafka: KafkaSettings) -> dict:
    conf = {"bootstrap.servers": kafka.bootstrap_servers}
    if kafka.security_protocol == "SASL_SSL":
        conf.update({"security.protocol": "SASL_SSL", "sasl.mechanisms": "PLAIN",
                     "sasl.username": kafka.sasl_username,
                     "sasl.password": kafka.sasl_password.reveal(),
                     "ssl.endpoint.identification.algorithm": "https"})
        if kafka.ssl_ca_file:
            conf["ssl.ca.location"] = kafka.ssl_ca_file
    return conf


def topics(kafka: KafkaSettings) -> list[str]:
    """The five Debezium topics, `<prefix>.binance.<table>`, in dataset order."""
    from binance_cdc.datasets import DATASETS

    return [f"{kafka.topic_prefix}.{d.topic_suffix}" for d in DATASETS.values()]


def message_counts(kafka: KafkaSettings, names: list[str], timeout: float = 10.0) -> dict[str, int]:
    """Messages held per topic (high - low watermark over its partitions; 0 for a topic not created yet)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({**client_conf(kafka), "group.id": "binance-cdc-counts", "enable.auto.commit": False})
    try:
        metadata = consumer.list_topics(timeout=timeout).topics
        counts = {}
        for name in names:
            topic = metadata.get(name)
            total = 0
            for partition in (topic.partitions if topic is not None and topic.error is None else {}):
                low, high = consumer.get_watermark_offsets(TopicPartition(name, partition), timeout=timeout)
                total += high - low
            counts[name] = total
        return counts
    finally:
        consumer.close()


def heartbeat_topic(kafka: KafkaSettings) -> str:
    """Where Debezium sends its heartbeats (topic.heartbeat.prefix's default, then topic.prefix)."""
    return f"__debezium-heartbeat.{kafka.topic_prefix}"


def newest_timestamp(kafka: KafkaSettings, topic: str, timeout: float = 5.0) -> float | str:
    """The newest message's timestamp in `topic` (epoch seconds, over all partitions), or a text saying why
    there is none (topic missing or empty, Kafka unreachable). Reads one message per partition."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    try:
        consumer = Consumer({**client_conf(kafka), "group.id": "binance-cdc-status", "enable.auto.commit": False})
    except KafkaException as exc:
        return f"unreachable ({exc})"
    try:
        metadata = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return f"no topic {topic}"
        newest: float | None = None
        for partition in metadata.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, partition, high - 1)])
            message = consumer.poll(timeout)
            if message is None or message.error():
                continue
            _kind, millis = message.timestamp()
            newest = max(newest or 0.0, millis / 1000)
        return newest if newest is not None else f"no message in {topic}"
    except KafkaException as exc:
        return f"unreachable ({str(exc)[:80]})"
    finally:
        consumer.close()


def partition_count(kafka: KafkaSettings, topic: str, timeout: float = 10.0) -> int:
    """How many partitions `topic` has (0 if Kafka does not know it). Asked by the stream's sink only when a
    truncate arrives: it is applied only from a single-partition topic (binance_cdc/stream/sink.py)."""
    from confluent_kafka import Consumer

    consumer = Consumer({**client_conf(kafka), "group.id": "binance-cdc-partitions", "enable.auto.commit": False})
    try:
        meta = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
        return 0 if meta is None or meta.error is not None else len(meta.partitions)
    finally:
        consumer.close()
