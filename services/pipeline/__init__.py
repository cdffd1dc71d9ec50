"""Per-stream wiring: source -> sampler -> classifier -> policy -> flags."""
