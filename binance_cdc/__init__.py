"""What the pipeline's scripts share, then one subpackage per stage.

Shared ground: datasets (the one description of the five datasets), settings (typed, from the
environment), postgres_conn, cassandra_conn, kafka_client (connections), change_log (what the stream
tells the bridge). Stages: extract/ (1), stream/ (3), serve/ (4); stage 2 is Debezium (connectors/).
"""
