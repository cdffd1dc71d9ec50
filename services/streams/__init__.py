"""What the service knows of a registered stream (the record, its checks); no I/O."""
