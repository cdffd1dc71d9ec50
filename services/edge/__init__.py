"""What the RTMP edge (nginx-rtmp) and platforms ask of stream keys and publishes."""
