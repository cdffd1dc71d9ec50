"""Ingest: open media sources with PyAV and turn packets into sampled frames."""
