"""Times the service can store and compute with: a bound on either side, checked at intake.

Year 1 or 9999 with an offset is valid RFC 3339 but overflows once moved to UTC, and
Kafka's offsets-for-times refuses anything before the epoch.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def outside(stamp: datetime, earliest: datetime, latest: datetime) -> str | None:
    """Why an aware ``stamp`` is out of [earliest, latest], or None.

    Comparing aware datetimes subtracts their offsets without building a UTC datetime,
    so this never overflows.
    """
    if stamp < earliest:
        return f"is before {earliest:%Y-%m-%d}"
    if stamp > latest:
        return f"is after {latest.isoformat(timespec='seconds')}"
    return None


def until_tomorrow(now: datetime | None = None) -> datetime:
    """The latest time a query may name: one day ahead of now."""
    return (now or datetime.now(UTC)) + timedelta(days=1)
