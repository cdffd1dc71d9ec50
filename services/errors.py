"""One error hierarchy for the whole service.

Every error says whether retrying the same operation may succeed (``retriable``),
so callers decide between backoff and giving up without string matching. Errors say
what went wrong in domain terms; the HTTP edge maps classes to statuses in one table
(``services.api.errors.STATUS_BY_ERROR``), so no domain code knows a status code.
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

    exit_code = 3


class InvalidRequest(StreamWardenError):
    """A request that does not parse or names something malformed (a bad id in a path)."""

    exit_code = 2


class Unprocessable(InvalidRequest):
    """A request that parses but whose content is refused (unknown or missing fields,
    a value out of bounds)."""


class Conflict(StreamWardenError):
    """The request contradicts the current state (already registered, held elsewhere)."""


class Refused(StreamWardenError):
    """A policy refuses the request (the provider gate, a stream key)."""


class Unavailable(StreamWardenError):
    """This node cannot serve the request now."""

    retriable = True


class ShuttingDown(Unavailable):
    """The service stopped accepting work; another node (or this one after its restart)
    will."""


class NotOnThisNode(Unavailable):
    """The part the request needs does not run in this process's roles; retrying the same
    node never helps."""

    retriable = False


# --- request bodies (read at the HTTP edge) -----------------------------------------------
class BodyRefused(InvalidRequest):
    """A request body that is not read. ``close_connection``: the rest of the body is
    unread or unreadable, so the answer closes the connection."""

    close_connection = False


class MalformedBody(BodyRefused):
    """Broken compression, syntax or encoding."""


class BodyTooLarge(BodyRefused):
    """Larger than the limit, declared or once inflated."""

    close_connection = True


class BodyTimeout(BodyRefused):
    """The body did not arrive within the deadline."""

    close_connection = True


class UnsupportedBodyType(BodyRefused):
    """A media type, charset or content encoding this edge does not take."""


class JsonRefused(InvalidRequest, ValueError):
    """Text that is not JSON (``MalformedJson``) or JSON outside the parser's bounds."""


class MalformedJson(JsonRefused):
    """Not JSON at all."""


class JsonOutOfBounds(JsonRefused, Unprocessable):
    """JSON nested too deep, a number too long, a lone surrogate."""


# --- domain refusals ------------------------------------------------------------------------
class KeyRefused(Refused):
    """A stream key is malformed, forged or revoked."""

    exit_code = 2

    def __init__(self, message: str, stream_id: str | None = None) -> None:
        super().__init__(message)
        #: Known only when the key was genuine (e.g. revoked): events name the stream.
        self.stream_id = stream_id


class IngestRefused(Refused):
    """The provider gate refused a stream; the refusal is already an event and an
    access-log line."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


class InvalidProvider(Unprocessable):
    """A provider record that does not pass the filing checks."""


class InvalidOffer(InvalidRequest):
    """A WHIP offer (SDP) that does not parse."""


class OfferNotNegotiable(Unprocessable):
    """A WHIP offer that parses but offers nothing this service can receive."""


class InvalidQuery(InvalidRequest):
    """An evidence or archive query that does not parse."""


class QueryOutOfRange(InvalidQuery, Unprocessable):
    """A well-formed time the evidence stores cannot be asked about."""


class RuleFileError(ConfigError):
    """The text judge's rules file cannot be used; the rules in force stay as they were."""


class WordListError(ConfigError):
    """A word list that does not parse; the old lists stay."""
