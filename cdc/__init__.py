"""The Debezium side: envelope decoding, connector configs, the Connect client, topics and the local stack."""
