"""Query and path parameters are validated and typed from the OpenAPI document (gateway/params.py).

Why: the handlers used to parse their own parameters; now the document is the one home. The compiled
validators must give the verdicts openapi-core's own `unmarshal_request` gives for the same document (it
is too slow to run per request, ADR 9), so the two are compared here on good and bad requests.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from aiohttp.test_utils import make_mocked_request
from openapi_core import OpenAPI
from openapi_core.contrib.aiohttp import AIOHTTPOpenAPIWebRequest

from gateway import openapi
from gateway.params import Parameters
from gateway.problems import Problem

OPERATIONS = {operation["operationId"]: (method, path, operation) for method, path, operation in openapi.operations()}


def read(operation_id: str, query: dict[str, str], path: dict[str, str] | None = None):
    return Parameters(OPERATIONS[operation_id][2]).read(query, path or {})


def test_values_are_typed_and_defaults_come_from_the_document() -> None:
    values = read("listInstances", {"limit": "5", "created_after": "2026-01-31T12:00:00Z"})
    assert values[("query", "limit")] == 5
    assert values[("query", "created_after")] == datetime(2026, 1, 31, 12, tzinfo=UTC)
    assert values[("query", "status")] is None
    assert read("listPending", {})[("query", "sort")] == "requested"
    assert read("listPending", {})[("query", "limit")] == 50
    assert read("getThroughput", {})[("query", "periods")] == 30
    assert read("approveStep", {"wait": "true"}, {"id": "x", "n": "3"})[("path", "n")] == 3
    assert read("approveStep", {"wait": "0"}, {"id": "x", "n": "3"})[("query", "wait")] is False


@pytest.mark.parametrize(("operation_id", "query", "path", "pointer"), [
    ("listInstances", {"limit": "abc"}, {}, "/query/limit"),
    ("listInstances", {"limit": "0"}, {}, "/query/limit"),
    ("listInstances", {"limit": "201"}, {}, "/query/limit"),
    ("listTemplates", {"status": "RUNNING"}, {}, "/query/status"),
    ("listInstances", {"status": "NOPE"}, {}, "/query/status"),
    ("listInstances", {"created_after": "yesterday"}, {}, "/query/created_after"),
    ("listInstances", {"created_before": "2026-01-31T12:00:00"}, {}, "/query/created_before"),  # no time zone
    ("listInstances", {"blocked_on": "you"}, {}, "/query/blocked_on"),
    ("listInstances", {"cursor": "x" * 501}, {}, "/query/cursor"),
    ("listPending", {"sort": "urgency"}, {}, "/query/sort"),
    ("getThroughput", {"bucket": "week"}, {}, "/query/bucket"),
    ("getThroughput", {"periods": "401"}, {}, "/query/periods"),
    ("getTemplate", {"version": "two"}, {"id": "t"}, "/query/version"),
    ("listMyDecisions", {"limit": "-1"}, {}, "/query/limit"),
    ("approveStep", {"wait": "maybe"}, {"id": "x", "n": "1"}, "/query/wait"),
    ("approveStep", {}, {"id": "x", "n": "0"}, "/path/n"),
    ("approveStep", {}, {"id": "x", "n": "abc"}, "/path/n"),
    ("getInstance", {}, {"id": "x" * 201}, "/path/id"),
    ("listInstances", {"template_id": "a\x00b"}, {}, "/query/template_id"),
])
def test_a_bad_parameter_is_a_400_naming_it(operation_id, query, path, pointer) -> None:
    with pytest.raises(Problem) as caught:
        read(operation_id, query, path)
    problem = caught.value
    assert problem.status == 400 and problem.pointer == pointer
    assert pointer.rsplit("/", 1)[-1] in problem.detail


SPEC = OpenAPI.from_dict(json.loads(json.dumps(openapi.DOCUMENT)))


@pytest.mark.parametrize("url", [
    "/v1/workflows/instances?limit=5&status=ACTIVE&created_after=2026-01-01T00:00:00Z",
    "/v1/workflows/instances?limit=abc", "/v1/workflows/instances?limit=500", "/v1/workflows/instances?status=NOPE",
    "/v1/workflows/instances?created_after=yesterday", "/v1/workflows/instances?created_after=2026-01-01T00:00:00",
    "/v1/workflows/pending?sort=deadline&limit=7", "/v1/workflows/pending?sort=x",
    "/v1/workflows/analytics/throughput?bucket=hour&periods=12", "/v1/workflows/analytics/throughput?periods=0",
    "/v1/workflows/templates?status=DRAFT", "/v1/workflows/templates/t1?version=2",
    "/v1/workflows/templates/t1?version=0",
])
def test_the_compiled_validators_agree_with_openapi_core(url: str) -> None:
    request = make_mocked_request("GET", url, headers={"Authorization": "Bearer x"})
    result = SPEC.unmarshal_request(AIOHTTPOpenAPIWebRequest(request, body=None))
    matches = [(m, p, o) for m, p, o in openapi.operations() if m == "GET" and _matches(p, request.path)]
    _, path_template, operation = matches[0]
    path = _path_values(path_template, request.path)
    try:
        values = Parameters(operation).read(request.query, path)
    except Problem as problem:
        assert result.errors, f"openapi-core accepts {url}; we refused it: {problem.detail}"
        assert {getattr(e, "name", None) for e in result.errors} >= {problem.extra["parameter"]}
        return
    assert not result.errors, f"openapi-core refuses {url}: {result.errors}; we accepted it"
    ours = {name: value for (location, name), value in values.items() if location == "query" and value is not None}
    theirs = dict(result.parameters.query)
    assert {k: _plain(v) for k, v in ours.items()} == {k: _plain(v) for k, v in theirs.items()}


def _matches(template: str, path: str) -> bool:
    parts, wanted = template.split("/"), path.split("/")
    return len(parts) == len(wanted) and all(p.startswith("{") or p == w for p, w in zip(parts, wanted, strict=True))


def _path_values(template: str, path: str) -> dict[str, str]:
    return {p[1:-1]: w for p, w in zip(template.split("/"), path.split("/"), strict=True) if p.startswith("{")}


def _plain(value):
    return value.isoformat() if isinstance(value, datetime) else value
