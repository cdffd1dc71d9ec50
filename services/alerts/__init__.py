"""Emergency response: alerts pushed to webhooks, and flag-to-action latency."""
