"""Stream assignment through Kafka: a compacted registry topic and a consumer group."""
