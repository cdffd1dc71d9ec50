"""Which frames to decode and keep: the cheap part of watching a stream."""
