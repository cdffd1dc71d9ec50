"""StreamWarden: live-stream content moderation and logging."""

__version__ = "0.1.0"
