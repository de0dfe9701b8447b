"""schemathesis against the API's own OpenAPI document, as an authenticated user:
whatever the document lets a client send, the API answers without a server error.
Bounded and derandomized, so that CI runs the same examples every time; every server
error found is listed at once."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings

from portal.models import Level
from tests import factories

EXAMPLES = 25  # per operation


@schemathesis.serializer("application/gzip", "text/csv", "application/octet-stream")
def raw_bytes(ctx, value) -> bytes:
    """The API's binary and CSV bodies: whatever bytes or text the example holds."""
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "surrogatepass")


def test_no_input_makes_a_server_error(app):
    headers = factories.headers(factories.token(factories.user("fuzz", level=Level.USER)))
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    errors: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def call(case) -> None:
            response = case.call(headers=headers)
            # The health check answers 503 by design while a part is down (here: no node).
            expected = case.formatted_path == "/api/v1/health" and response.status_code == 503
            if response.status_code >= 500 and not expected:
                errors.append(
                    f"{case.method} {case.formatted_path} {case.query} {str(case.body)[:120]} "
                    f"-> {response.status_code} {response.text[:200]}"
                )

        call()
    assert operations > 80  # the whole API was tried
    assert errors == [], "\n".join(errors)
