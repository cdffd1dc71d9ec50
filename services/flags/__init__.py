"""Flags: the schema moderators consume, and their durable path to Kafka."""
