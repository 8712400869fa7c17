"""Kafka Connect connector configs (JSON) and their registration (connectors.register)."""
