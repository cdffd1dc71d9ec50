"""Contract tests: schemathesis fuzzes every operation of the served OpenAPI document
against a running ``streamwarden serve``, with every role's token (and none): no 5xx,
every status, content type, body and header as the document says.

The schema is loaded from the service's own ``/openapi.json``. For a role an operation
lists: the document's examples (the valid requests), then 25 positive and 25 negative
generated cases; for a role it does not list, 3 (the auth layer answers them before
anything else). Each is a derandomized Hypothesis run (no shrinking, no example
database): the same requests every time. The live queue (``/console/flags``,
server-sent events) never ends by itself: it is read until half a second of silence
or 64 KiB, at most twice per role, then validated like the rest.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.api.auth import ROLES
from tests.helpers import unique
from tests.service_helpers import RunningService, start_service

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance]
#: Examples per operation for a role it lists, and for one it does not (401/403 only).
#: STREAMWARDEN_CONTRACT_EXAMPLES=N runs deeper (make test keeps the default).
ALLOWED_EXAMPLES = int(os.environ.get("STREAMWARDEN_CONTRACT_EXAMPLES", "25"))
REFUSED_EXAMPLES = 3
#: The one endpoint that answers forever (server-sent events).
STREAMING = {"/console/flags"}
STREAMING_EXAMPLES, SSE_LIMIT_BYTES, SSE_SILENCE_S = 2, 64 * 1024, 0.5
#: (role, status) -> answers (printed with -s).
SEEN: Counter[tuple[str | None, int]] = Counter()


@schemathesis.serializer("application/sdp", "application/x-ndjson", "application/ndjson",
                         "application/jsonl")
def _text(context: Any, value: Any) -> dict[str, Any]:
    """WHIP offers and JSON-lines log bodies are text (documented as strings), for
    which schemathesis has no serializer of its own."""
    if isinstance(value, bytes):
        return {"data": value}
    return {"data": (value if isinstance(value, str) else json.dumps(value)).encode()}


@pytest.fixture(scope="module")
def service(stack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[RunningService]:
    # Its own log topics and archiver groups: the thousands of generated log lines must
    # not stay behind on the shared default topics for later tests' archivers.
    running = start_service(stack_env, tmp_path_factory.mktemp("contract"),
                            STREAMWARDEN_LOGS__TOPIC=unique("userlogs"),
                            STREAMWARDEN_LOGS__GROUP_ID=unique("log-archiver"),
                            STREAMWARDEN_LOGS__ACCESS_TOPIC=unique("accesslog"),
                            STREAMWARDEN_LOGS__ACCESS_GROUP_ID=unique("access-archiver"))
    try:
        yield running
    finally:
        if running.process.poll() is None:
            running.stop()


@pytest.fixture(scope="module")
def schema(service: RunningService) -> Any:
    return schemathesis.openapi.from_url(f"{service.base_url}/openapi.json")


def _roles_of(operation: Any) -> set[str]:
    return {role for requirement in operation.definition.raw.get("security", [])
            for roles in requirement.values() for role in roles}


def _call(case: Case, base_url: str, headers: dict[str, str]) -> Any:
    if case.operation.path not in STREAMING:
        return case.call(base_url=base_url, headers=headers, timeout=30)
    # Server-sent events: read what arrives until half a second of silence (the backlog is
    # sent at once; the next keep-alive is 15 s away) or the byte limit, then stop.
    kwargs = case.as_transport_kwargs(base_url=base_url, headers=headers)
    response = requests.request(**kwargs, stream=True, timeout=(10, SSE_SILENCE_S))
    body = bytearray()
    try:
        for chunk in response.iter_content(chunk_size=None):
            body.extend(chunk)
            if len(body) >= SSE_LIMIT_BYTES:
                break
    except requests.ConnectionError:  # the read timeout: the backlog has been sent
        pass
    finally:
        response.close()
    response._content = bytes(body)
    response._content_consumed = True
    return response


def _run(operation: Any, base_url: str, role: str | None, headers: dict[str, str],
         examples: int, strategy: Any) -> None:
    @given(case=strategy)
    @settings(max_examples=examples, derandomize=True, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate], report_multiple_bugs=False,
              suppress_health_check=list(HealthCheck))
    def check(case: Case) -> None:
        response = _call(case, base_url, headers)
        SEEN[role, response.status_code] += 1
        case.validate_response(response, checks=CHECKS, headers=headers)

    check()


@pytest.mark.parametrize("role", [*ROLES, None], ids=[*ROLES, "no-token"])
def test_every_operation_keeps_the_contract(service: RunningService, schema: Any,
                                            role: str | None) -> None:
    headers = {"Authorization": f"Bearer {service.token(role)}"} if role else {}
    failures: list[str] = []
    ran = 0
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        allowed = role in _roles_of(operation) or not operation.definition.raw.get("security")
        examples = ALLOWED_EXAMPLES if allowed else REFUSED_EXAMPLES
        if operation.path in STREAMING:
            examples = min(examples, STREAMING_EXAMPLES)
        runs: list[tuple[str, Any, int]] = [
            ("positive", operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
             examples)]
        if allowed:  # the document's examples (the valid requests), then broken data
            runs[:0] = [("example", strategy, 1)
                        for strategy in operation.get_strategies_from_examples()]
            # Negative data where there is something to break: parameters or a body.
            if any((operation.path_parameters, operation.query, operation.headers,
                    operation.cookies, operation.body)):
                runs.append(("negative", operation.as_strategy(
                    generation_mode=GenerationMode.NEGATIVE), examples))
        for kind, strategy, count in runs:
            ran += 1
            try:
                _run(operation, service.base_url, role, headers, count, strategy)
            except (Exception, BaseExceptionGroup) as error:  # noqa: BLE001 - collected
                failures.append(f"--- {operation.label} ({kind}, role {role}):\n"
                                f"{str(error)[:3000]}")
    statuses = {status: SEEN[role, status] for status in sorted(
        status for who, status in SEEN if who == role)}
    print(f"role {role}: {ran} runs, {sum(statuses.values())} requests, statuses "
          f"{statuses}, {time.monotonic() - started:.1f} s")
    assert not failures, "\n".join(failures)
