"""The local real stack: Postgres, Kafka (KRaft), Kafka Connect + Debezium, Cassandra, on 127.0.0.1.

Run through the Makefile (`make up`, `make down`, `make status`) or `python -m stack <command>`.
Binaries come from Debian (Postgres) and from Maven (.local/lib, resolved by stack/maven/pom.xml);
data, logs and pid files live under .local/ (ignored by git).
"""
