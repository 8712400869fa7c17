"""Stage 3, streaming: Debezium envelopes (debezium) -> Cassandra writes (sink), run by Spark (job, spark_session)."""
