"""WebRTC (WHIP) ingest sessions answered by this node."""
