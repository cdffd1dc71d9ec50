"""Compliance reporting: what was watched, flagged, acted on, refused and retained."""
