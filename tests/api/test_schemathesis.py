"""Property-based run over the served OpenAPI 3.1 document (schemathesis): no 5xx, every answer conforms
to the schema (status code, content type, body). CI-sized: a bounded number of examples per operation and
a deterministic seed (``derandomize``). The operations are driven with hypothesis directly (the
schemathesis pytest plugin does not support this pytest version)."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

MAX_EXAMPLES = 12  # per operation (~15 operations): a CI-sized run
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_no_server_error_and_schema_conformance(module_api: Any) -> None:
    schema = schemathesis.openapi.from_url(f"{module_api.url}/openapi.json")
    headers = {"Authorization": f"Bearer {module_api.token}"}
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        op = result.ok()
        operations += 1

        @given(case=op.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
            suppress_health_check=list(HealthCheck),
        )  # fmt: skip
        def run(case: Any) -> None:
            case.call_and_validate(headers=headers, timeout=30, checks=CHECKS)

        try:
            run()
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{op.label}: {type(exc).__name__}: {str(exc)[:800]}")
    assert operations >= 15
    assert not failures, "\n\n".join(failures)
