"""Model registry, manifests and runtime. Knows nothing of streams or Kafka."""
