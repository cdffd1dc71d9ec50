"""Policy: pure functions from scores to decisions. Publishes nothing."""
