"""HTTP API: stream registry, stream keys and edge callbacks, WHIP, health. aiohttp."""
