"""One error hierarchy for the whole service.

Every error says whether retrying the same operation may succeed (``retriable``),
so callers decide between backoff and giving up without string matching.
"""

from __future__ import annotations


class StreamWardenError(Exception):
    """Base of every error the service raises on purpose."""

    retriable: bool = False
    #: Process exit status the CLI uses when this error ends a command.
    exit_code: int = 1

    def __init__(self, message: str, *, retriable: bool | None = None) -> None:
        super().__init__(message)
        if retriable is not None:
            self.retriable = retriable


class ConfigError(StreamWardenError):
    """A setting or argument is invalid; fix the input and run again."""

    exit_code = 2


class InvalidStreamId(ConfigError):
    """A stream id that could escape its storage prefix or is too long."""


class SourceError(StreamWardenError):
    """The media source could not be opened or read."""

    retriable = True


class SourceOpenError(SourceError):
    """The URL did not open (refused, not found, timed out)."""


class SourceStalled(SourceError):
    """The source stopped sending data for longer than the read timeout."""


class UnsupportedMedia(SourceError):
    """The source opened but has no decodable video (unknown codec, audio only)."""

    retriable = False


class DependencyUnavailable(StreamWardenError):
    """A server the service needs (broker, object store) does not answer."""

    retriable = True


class BrokerUnavailable(DependencyUnavailable):
    """The Kafka-compatible broker does not answer."""


class StorageUnavailable(DependencyUnavailable):
    """The S3-compatible object store does not answer."""


class ModelError(StreamWardenError):
    """A model could not be found, verified or loaded."""


class ModelIntegrityError(ModelError):
    """The model file on disk is not the one its manifest names (SHA-256 mismatch)."""


class SpoolFull(StreamWardenError):
    """The local spool reached its size cap; the item was not accepted."""

    retriable = True


class NotFound(StreamWardenError):
    """What was asked for does not exist (no archived session, no such object)."""

    status = 404
    exit_code = 3
