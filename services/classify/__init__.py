"""Classification: model inference off the event loop, batched."""
