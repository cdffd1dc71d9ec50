"""Whether this process takes new work. Every domain service that accepts something
(a registration, a publish, a report, log lines, an action) asks the same gate, so a
request that arrives after shutdown began is refused and nothing is spooled once the
senders have stopped."""

from __future__ import annotations

from services.errors import ShuttingDown


class Admission:
    def __init__(self) -> None:
        self._open = False

    @property
    def accepting(self) -> bool:
        return self._open

    def open(self) -> None:
        self._open = True

    def close(self) -> None:
        self._open = False

    def check(self) -> None:
        if not self._open:
            raise ShuttingDown("the service is not accepting work (starting or shutting down)")
