"""Schemathesis against the served OpenAPI document: generated requests (a bounded number per operation)
never get a 5xx, and every response matches the documented status codes, content types and schemas.

It runs in a child process (schemathesis' client is synchronous, and CPython 3.11's ast module is not
safe to use from two threads at once) against the gateway's real loopback port, while the test's event
loop keeps the engine, projector and gateway running.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.asyncio(loop_scope="session"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]

REPO = Path(__file__).resolve().parents[3]
MAX_EXAMPLES = int(os.environ.get("FLOWLINE_SCHEMATHESIS_EXAMPLES", "25"))


def run_schemathesis(base_url: str, headers: dict[str, str], document: dict) -> list[str]:
    import requests
    import schemathesis
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    schema = schemathesis.openapi.from_dict(document)
    session = requests.Session()
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        failures.extend(_check_operation(operation, base_url, session, headers, checks))
    return failures


def _check_operation(operation, base_url, session, headers, checks) -> list[str]:
    import hypothesis

    @hypothesis.settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, derandomize=True,
                         phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
                         suppress_health_check=list(hypothesis.HealthCheck))
    @hypothesis.given(case=operation.as_strategy())
    def check(case) -> None:
        case.call_and_validate(base_url=base_url, session=session, headers=headers, checks=checks,
                               timeout=30)

    try:
        check()
    except Exception as exc:
        return [f"{operation.label}: {type(exc).__name__}: {str(exc)[:2000]}"]
    return []


async def test_generated_requests_get_no_5xx_and_conform_to_the_document(api_world, tenant):
    from core.builtin import builtin_template
    from gateway import openapi

    # something real to find: a template and an instance of this tenant
    doc = builtin_template("procurement_approval")
    await api_world.call("POST", "/v1/workflows/templates", tenant, json=doc, expect=201)
    served_before = _served()
    server = api_world.client.server
    base_url = f"http://{server.host}:{server.port}"
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.integration.gateway.test_schemathesis", base_url, tenant.tokens["admin"],
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=REPO)
    out, err = await asyncio.wait_for(child.communicate(), 600)
    assert child.returncode == 0, err.decode()[-5000:]
    failures = json.loads(out.decode().strip().splitlines()[-1])
    assert not failures, "\n\n".join(failures)
    served = _served() - served_before
    assert served >= 5 * len(openapi.operations()), f"only {served} requests were generated"


def _served() -> float:
    from gateway.app import REQUESTS

    return sum(s.value for m in REQUESTS.collect() for s in m.samples if s.name.endswith("_total"))


if __name__ == "__main__":
    from gateway import openapi

    url, token = sys.argv[1], sys.argv[2]
    print(json.dumps(run_schemathesis(url, {"Authorization": f"Bearer {token}"}, openapi.DOCUMENT)))
