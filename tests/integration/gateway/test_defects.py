"""Defects found by a new user and a security review (issues 9 and 10), each pinned by a test that failed
before its fix: decisions racing the projector, replayed callbacks, idempotency keys across principals,
pending-approval pages, PostgreSQL outages and hostile request bodies."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from core import events as ev
from tests.integration.gateway.test_api import I, create

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _resume_later(world, seconds: float) -> None:
    await asyncio.sleep(seconds)
    await world.resume_projector()


# ------------------------------------------------------------------------------- 9.7 decisions vs lag

async def test_a_decision_sent_right_after_approval_requested_is_accepted_not_404(api_world, tenant):
    template = await create(api_world, tenant)
    other = await api_world.new_tenant()
    gw = api_world.gateway
    original = gw.settings
    gw.settings = dataclasses.replace(original, instance_wait_seconds=20)
    await api_world.pause_projector()
    resumed = None
    try:
        _, started = await api_world.call("POST", I, tenant, "requester", expect=202,
                                          json={"template_id": template["id"], "trigger_data": {"amount": 5000}})
        iid = started["instance_id"]
        # a client following workflow.events sees the request while the read model knows nothing yet
        await api_world.engine.wait_for_event(iid, ev.ApprovalRequested, step=2)
        resumed = asyncio.create_task(_resume_later(api_world, 0.5))
        _, accepted = await api_world.call("POST", f"{I}/{iid}/steps/2/approve", tenant, "cfo",
                                           json={"reasoning": "seen on the event stream"}, expect=202)
        assert accepted["instance_id"] == iid
    finally:
        if resumed is not None:
            await resumed
        else:
            await api_world.resume_projector()
        gw.settings = original
    await api_world.engine.wait_for_event(iid, ev.DecisionRecorded, step=2)
    detail = await api_world.wait_instance(tenant, iid, lambda b: b["current_step"] == 3)
    assert [t["actor"]["id"] for t in detail["timeline"] if t["event_type"] == "DecisionRecorded"] == [
        tenant.ids["cfo"]]
    # waiting never loosens the checks: another tenant's approver and an unknown id still get 404
    status, _ = await api_world.call("POST", f"{I}/{iid}/steps/3/approve", other, "manager", json={})
    assert status == 404
    status, _ = await api_world.call("POST", f"{I}/wfi_nope/steps/3/approve", tenant, "manager", json={})
    assert status == 404


async def test_a_waiting_decision_is_woken_by_the_projectors_commit_not_a_polling_schedule(api_world, tenant):
    """Issue 15: the gateway LISTENs for the projector's NOTIFY, so a request waiting for the read model
    re-reads when a batch commits (the wait is the projector's lag, not lag plus a polling step)."""
    template = await create(api_world, tenant)
    gw = api_world.gateway
    assert gw.projected.listening
    await api_world.pause_projector()
    armed = gw.projected.armed()
    try:
        _, started = await api_world.call("POST", I, tenant, "requester", expect=202,
                                          json={"template_id": template["id"], "trigger_data": {"amount": 5000}})
        await api_world.engine.wait_for_event(started["instance_id"], ev.ApprovalRequested, step=2)
    finally:
        await api_world.resume_projector()
    await asyncio.wait_for(armed.wait(), 60)  # the projector's commit of that instance fires the signal
    row = await gw.pool.fetchrow("SELECT id FROM workflow_instances WHERE id = $1", started["instance_id"])
    assert row is not None


async def test_a_persons_decision_reaches_the_engine_while_the_projector_lags(api_world, tenant):
    """Issue 15: the engine checks a person's decision (tenant, approvers) on its own state, so the decision
    is not held back until the read model shows the instance; the HTTP answer still comes from the read
    model (202 here, 404 for an unknown or another tenant's id)."""
    template = await create(api_world, tenant)
    gw = api_world.gateway
    original = gw.settings
    gw.settings = dataclasses.replace(original, instance_wait_seconds=60)
    await api_world.pause_projector()
    answer = None
    try:
        _, started = await api_world.call("POST", I, tenant, "requester", expect=202,
                                          json={"template_id": template["id"], "trigger_data": {"amount": 5000}})
        iid = started["instance_id"]
        await api_world.engine.wait_for_event(iid, ev.ApprovalRequested, step=2)
        answer = asyncio.create_task(api_world.call("POST", f"{I}/{iid}/steps/2/approve", tenant, "cfo",
                                                    json={"reasoning": "before the read model"}))
        # recorded by the engine while the read model still knows nothing of the instance
        await asyncio.wait_for(api_world.engine.wait_for_event(iid, ev.DecisionRecorded, step=2), 30)
        assert not answer.done()
    finally:
        await api_world.resume_projector()
        gw.settings = original
    status, _ = await answer
    assert status == 202



async def test_another_tenants_decision_leaves_no_entry_in_the_instances_audit_trail(api_world, tenant):
    """Issue 10 residual: a decision sent to another tenant's instance was refused, but the refusal became an
    entry of that instance's audit trail, so an attacker could write into another tenant's log. Now the
    engine refuses it outside the instance's sequence and the projector records it in the security log of
    the attacker's own tenant."""
    template = await create(api_world, tenant)
    other = await api_world.new_tenant()
    _, started = await api_world.call("POST", I, tenant, "requester", expect=202,
                                      json={"template_id": template["id"], "trigger_data": {"amount": 5000}})
    iid = started["instance_id"]
    await api_world.engine.wait_for_event(iid, ev.ApprovalRequested, step=2)
    status, _ = await api_world.call("POST", f"{I}/{iid}/steps/2/approve", other, "cfo",
                                     json={"reasoning": "written into your log"})
    assert status == 404
    rejection = await api_world.engine.wait_for_event(iid, ev.CommandRejected)
    pool = api_world.gateway.pool
    for _ in range(300):  # the projector records every refusal (for ?wait=true): wait for this one
        if await pool.fetchval("SELECT 1 FROM workflow_rejected_commands WHERE command_id = $1",
                               rejection.command_id):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the projector never recorded the refusal")
    trail = await pool.fetch("SELECT event_type, actor_id, reasoning FROM workflow_transitions WHERE instance_id = $1",
                             iid)
    assert [r for r in trail if r["event_type"] == "CommandRejected" or r["actor_id"] == other.ids["cfo"]] == []
    detail = await api_world.wait_instance(tenant, iid, lambda b: True)
    assert "written into your log" not in str(detail)
    logged = await pool.fetch("SELECT tenant_id, actor_id, kind, command_type, instance_id FROM security_log "
                              "WHERE command_id = $1", rejection.command_id)
    assert [dict(r) for r in logged] == [{"tenant_id": other.id, "actor_id": other.ids["cfo"],
                                          "kind": "cross_tenant_command", "command_type": "RecordDecision",
                                          "instance_id": iid}]
    # the attacker's tenant's admins read it; the victim's security log has nothing of it
    _, theirs = await api_world.call("GET", "/v1/security-log", other, "admin", expect=200)
    assert [(i["actor_id"], i["instance_id"], i["command_type"]) for i in theirs["items"]] == [
        (other.ids["cfo"], iid, "RecordDecision")]
    _, ours = await api_world.call("GET", "/v1/security-log", tenant, "admin", expect=200)
    assert ours["items"] == []
    status, _ = await api_world.call("GET", "/v1/security-log", other, "operator")
    assert status == 403


# ------------------------------------------------------------------------------- 9.5 replayed callbacks

EXTERNAL = {"name": "ERP check", "trigger_type": "manual", "steps": [
    {"type": "external", "name": "Submit", "config": {"mode": "async", "url": "https://erp.example/api",
                                                     "method": "POST", "completion_timeout_hours": 1}}]}


async def waiting_for_callback(world, tenant) -> tuple[str, dict]:
    """An instance whose external step 1 was called and accepted; its callback URL and token."""
    from core.commands import ReportStepResult
    from schemas import topics

    template = await create(world, tenant, EXTERNAL)
    _, started = await world.call("POST", f"{I}?wait=true", tenant, "operator",
                                  json={"template_id": template["id"]}, expect=201)
    iid = started["id"]
    request = await world.engine.wait_for_request(iid, step=1)
    await world.engine.send_command(ReportStepResult(
        command_id=f"result:{request.request_id}", instance_id=iid, step=1, attempt=request.attempt,
        outcome="accepted", output={"status": 202, "body": {}}), topic=topics.WORKFLOW_STEP_RESULTS)
    await world.wait_instance(tenant, iid, lambda b: b["blocking"].get("waiting_for") == "callback")
    _, cb = await world.call("GET", f"{I}/{iid}/steps/1/callback-url", tenant, "integration", expect=200)
    return iid, cb


def signed(token: str, body: dict) -> tuple[bytes, dict[str, str]]:
    import json
    import time

    from core.signing import sign_payload

    raw = json.dumps(body).encode()
    return raw, {"Content-Type": "application/json",
                 "X-Flowline-Signature": sign_payload(token.encode(), raw, int(time.time()))}


async def test_a_replayed_signed_callback_is_refused_with_409(api_world, tenant):
    iid, cb = await waiting_for_callback(api_world, tenant)
    raw, headers = signed(cb["token"], {"status": "completed", "result": {"risk_score": 0.12}})
    path = f"{I}/{iid}/steps/1/complete-external"
    # five copies of one signed callback at the same moment: exactly one reaches the engine
    answers = await asyncio.gather(*(api_world.call("POST", path, tenant, "integration", data=raw, headers=headers)
                                     for _ in range(5)))
    assert sorted(status for status, _ in answers) == [202, 409, 409, 409, 409], answers
    problem = next(body for status, body in answers if status == 409)
    assert problem["status"] == 409 and problem["title"] == "Callback already applied" and "replay" in problem["detail"]
    await api_world.wait_instance(tenant, iid, lambda b: b["status"] == "COMPLETED")
    # a later replay, and another correctly signed body for the same attempt, are refused too
    status, problem = await api_world.call("POST", path, tenant, "integration", data=raw, headers=headers)
    assert status == 409 and problem["type"].endswith("/conflict")
    raw2, headers2 = signed(cb["token"], {"status": "failed"})
    status, _ = await api_world.call("POST", path, tenant, "integration", data=raw2, headers=headers2)
    assert status == 409


# ------------------------------------------------------------------------------- 10.7 idempotency keys

async def test_idempotency_keys_are_scoped_to_the_principal(api_world, tenant):
    template = await create(api_world, tenant)
    body = {"template_id": template["id"], "trigger_data": {"id": "tr_42", "amount": 10}}
    client = api_world.client
    first = await client.post(f"{I}?wait=true", json=body,
                              headers={**tenant.auth("requester"), "Idempotency-Key": "order-42"})
    started_by_requester = await first.json()
    assert first.status == 201 and "Idempotent-Replayed" not in first.headers
    # the same key from another principal is another request: its own instance, not the first one
    second = await client.post(f"{I}?wait=true", json=body,
                               headers={**tenant.auth("operator"), "Idempotency-Key": "order-42"})
    started_by_operator = await second.json()
    assert second.status == 201, started_by_operator
    assert started_by_operator["id"] != started_by_requester["id"]
    assert started_by_operator["initiated_by"]["id"] == tenant.ids["operator"]
    assert "Idempotent-Replayed" not in second.headers
    # a replay by the first caller: the original response, marked as a replay
    replay = await client.post(f"{I}?wait=true", json=body,
                               headers={**tenant.auth("requester"), "Idempotency-Key": "order-42"})
    assert replay.status == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert (await replay.json()) == started_by_requester
    # the same key with another body: 422 problem
    other = await client.post(f"{I}?wait=true", json={**body, "trigger_data": {"id": "tr_43", "amount": 10}},
                              headers={**tenant.auth("requester"), "Idempotency-Key": "order-42"})
    assert other.status == 422 and (await other.json())["pointer"] == "/header/Idempotency-Key"


# ------------------------------------------------------------------------------- 9.4 pending pages

def cfo_approval(name: str, timeout_hours: float | None) -> dict:
    config: dict = {"approvers": {"type": "role", "value": "cfo"}}
    if timeout_hours is not None:
        config["timeout_hours"] = timeout_hours
    return {"name": name, "trigger_type": "manual", "steps": [{"type": "approval", "name": name, "config": config}]}


async def pages(world, tenant, query: str) -> list[dict]:
    items: list[dict] = []
    cursor = None
    for _ in range(20):
        path = "/v1/workflows/pending?" + query + (f"&cursor={cursor}" if cursor else "")
        _, page = await world.call("GET", path, tenant, "cfo", expect=200)
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("the pages never ended")


async def test_pending_approvals_are_paginated_and_sortable_by_deadline(api_world, tenant):
    started = []
    for hours in (48, 1, None, 48, 1, None, 12):
        template = await create(api_world, tenant, cfo_approval(f"wait {hours}", hours))
        _, body = await api_world.call("POST", I, tenant, "requester", json={"template_id": template["id"]},
                                       expect=202)
        started.append(body["instance_id"])
    for iid in started:
        await api_world.wait_instance(tenant, iid, lambda b: b["blocking"].get("waiting_for") == "approval")

    _, everything = await api_world.call("GET", "/v1/workflows/pending?limit=200", tenant, "cfo", expect=200)
    assert everything["next_cursor"] is None and len(everything["items"]) == 7
    by_requested = await pages(api_world, tenant, "limit=2")
    assert [p["instance_id"] for p in by_requested] == [p["instance_id"] for p in everything["items"]]
    assert sorted(p["instance_id"] for p in by_requested) == sorted(started)
    requested = [p["requested_at"] for p in by_requested]
    assert requested == sorted(requested)

    by_deadline = await pages(api_world, tenant, "sort=deadline&limit=3")
    assert sorted(p["instance_id"] for p in by_deadline) == sorted(started)
    deadlines = [p["deadline"] for p in by_deadline]
    with_deadline = [d for d in deadlines if d is not None]
    assert deadlines[:len(with_deadline)] == sorted(with_deadline)  # soonest first, none last
    assert all(d is None for d in deadlines[len(with_deadline):]) and len(with_deadline) == 5

    status, problem = await api_world.call("GET", "/v1/workflows/pending?sort=urgency", tenant, "cfo")
    assert status == 400 and problem["pointer"] == "/query/sort"
    _, first = await api_world.call("GET", "/v1/workflows/pending?limit=2", tenant, "cfo", expect=200)
    status, problem = await api_world.call(
        "GET", f"/v1/workflows/pending?sort=deadline&cursor={first['next_cursor']}", tenant, "cfo")
    assert status == 400 and problem["pointer"] == "/query/cursor"


# ------------------------------------------------------------------------------- 9.6 PostgreSQL down

class Switch:
    """A TCP hop between a gateway and the test stack's PostgreSQL that can be cut: `down()` refuses new
    connections and drops the open ones (what the gateway sees when PostgreSQL stops), `up()` restores."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)
        self.port = self.server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.writers):
            writer.transport.abort()
        self.writers.clear()
        await self.server.wait_closed()

    async def _serve(self, reader, writer) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers |= {writer, up_writer}

        async def pump(src, dst) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))


async def test_postgresql_down_answers_503_with_retry_after_and_health_names_it(api_world, tenant, database_url):
    from urllib.parse import urlsplit

    from aiohttp.test_utils import TestClient, TestServer

    from gateway.app import build_app, start_gateway, stop_gateway

    template = await create(api_world, tenant)
    parts = urlsplit(database_url)
    switch = Switch(parts.hostname, parts.port)
    await switch.up()
    await switch.down()  # PostgreSQL is down before the gateway starts: it must start anyway
    url = database_url.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{switch.port}")
    gateway = await start_gateway(dataclasses.replace(api_world.settings, database_url=url))
    client = TestClient(TestServer(build_app(gateway)))
    await client.start_server()
    try:
        health = await client.get("/health")
        checks = (await health.json())["checks"]
        assert health.status == 503 and checks["database"]["ok"] is False and checks["broker"]["ok"] is True
        await switch.up()
        listed = await client.get("/v1/workflows/templates", headers=tenant.auth("admin"))
        assert listed.status == 200
        await switch.down()  # and now it stops under a running gateway
        for method, path, body in (
                ("GET", "/v1/workflows/templates", None),
                ("GET", f"/v1/workflows/templates/{template['id']}", None),
                ("GET", I, None),
                ("GET", "/v1/workflows/pending", None),
                ("POST", I, {"template_id": template["id"], "trigger_data": {"amount": 5}})):
            response = await client.request(method, path, json=body, headers=tenant.auth("admin"))
            problem = await response.json()
            assert response.status == 503, (method, path, problem)
            assert response.content_type == "application/problem+json"
            assert int(response.headers["Retry-After"]) > 0
            assert problem["title"] == "Read model unavailable" and "PostgreSQL" in problem["detail"]
        health = await client.get("/health")
        checks = (await health.json())["checks"]
        assert health.status == 503 and checks["database"]["ok"] is False and checks["broker"]["ok"] is True
        await switch.up()  # back: the same gateway serves again
        listed = await client.get("/v1/workflows/templates", headers=tenant.auth("admin"))
        assert listed.status == 200
    finally:
        await client.close()
        await stop_gateway(gateway)
        if switch.server is not None:
            switch.server.close()


async def test_a_command_sent_before_postgresql_goes_away_answers_202_and_its_key_stays_usable(
        api_world, tenant, database_url):
    from urllib.parse import urlsplit

    import asyncpg
    from aiohttp.test_utils import TestClient, TestServer

    from core.triggers import instance_id_for
    from gateway.app import build_app, start_gateway, stop_gateway

    template = await create(api_world, tenant)
    parts = urlsplit(database_url)
    switch = Switch(parts.hostname, parts.port)
    await switch.up()
    url = database_url.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{switch.port}")
    gateway = await start_gateway(dataclasses.replace(api_world.settings, database_url=url))
    client = TestClient(TestServer(build_app(gateway)))
    await client.start_server()
    key = "po-outage"
    body = {"template_id": template["id"], "trigger_data": {"amount": 5}}
    headers = {**tenant.auth("requester"), "Idempotency-Key": key}
    iid = instance_id_for(template["id"], "manual:" + tenant.ids["requester"] + "\x00" + key)
    try:
        await api_world.pause_projector()  # the outcome cannot show up, so the request is still waiting...
        try:
            pending = asyncio.create_task(client.post(f"{I}?wait=true", json=body, headers=headers))
            await api_world.engine.wait_for_event(iid, ev.InstanceStarted)  # ...after its command reached Kafka
            await switch.down()
            response = await pending
            assert response.status == 202, await response.text()
            assert (await response.json())["instance_id"] == iid
        finally:
            await api_world.resume_projector()
        await switch.up()
        # the answer could not be kept: a retry hears "in progress" while a first request could still run...
        response = await client.post(f"{I}?wait=true", json=body, headers=headers)
        assert response.status == 409 and "in progress" in (await response.json())["detail"]
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("UPDATE idempotency_keys SET created_at = now() - interval '1 hour' "
                               "WHERE principal_id = $1 AND key = $2", tenant.ids["requester"], key)
        finally:
            await conn.close()
        # ...and runs again once none can: the same instance (the key fixes its id), not a second one
        response = await client.post(f"{I}?wait=true", json=body, headers=headers)
        assert response.status in (201, 202), await response.text()
        answer = await response.json()
        assert answer.get("id", answer.get("instance_id")) == iid
        replay = await client.post(f"{I}?wait=true", json=body, headers=headers)
        assert replay.status == response.status and replay.headers["Idempotent-Replayed"] == "true"
    finally:
        await client.close()
        await stop_gateway(gateway)
        if switch.server is not None:
            switch.server.close()


# ------------------------------------------------------------------------------- 10.8 hostile bodies

async def test_deeply_nested_and_non_finite_bodies_are_problems_not_500_or_503(api_world, tenant):
    template = await create(api_world, tenant)
    client = api_world.client
    headers = {**tenant.auth("admin"), "Content-Type": "application/json"}
    deep = b"[" * 100_000 + b"]" * 100_000
    for body in (deep, b'{"template_id": "x", "trigger_data": ' + b'{"a": ' * 100 + b"1" + b"}" * 100 + b"}"):
        response = await client.post(I, data=body, headers=headers)
        problem = await response.json()
        assert response.status == 400 and "nests deeper" in problem["detail"], problem
        assert response.content_type == "application/problem+json"
    for number in (b"NaN", b"Infinity", b"-Infinity", b"1e400"):
        body = b'{"template_id": "' + template["id"].encode() + b'", "trigger_data": {"amount": ' + number + b"}}"
        response = await client.post(I, data=body, headers=headers)
        problem = await response.json()
        assert response.status == 422 and "non-finite" in problem["detail"], (number, problem)
    # strings PostgreSQL and the codec cannot hold: refused up front, not a 500 from the database or Kafka
    for text in (b'"a\\u0000b"', b'"\\ud800"'):
        for body in (b'{"template_id": "' + template["id"].encode() + b'", "trigger_data": {"memo": ' + text + b"}}",
                     b'{"name": ' + text + b', "trigger_type": "manual", "steps": []}'):
            path = I if b"template_id" in body else "/v1/workflows/templates"
            response = await client.post(path, data=body, headers=headers)
            assert response.status == 422, (path, body, response.status, await response.text())
    status, _ = await api_world.call("GET", f"{I}/%00", tenant)
    assert status == 400
    status, _ = await api_world.call("GET", f"{I}?template_id=%00", tenant)
    assert status == 400


async def _raw_server(api_world, **overrides):
    from aiohttp.test_utils import TestServer

    from gateway.app import build_app, server_options

    gw = api_world.gateway
    settings = dataclasses.replace(gw.settings, **overrides)
    server = TestServer(build_app(dataclasses.replace(gw, settings=settings)))
    await server.start_server(**server_options(settings))
    return server


async def _closed_while_trickling(reader, writer, chunk: bytes, rounds: int = 60) -> bytes | None:
    """Send `chunk` every 0.25 s; what the server answered once it closed, or None if it never did."""
    for _ in range(rounds):
        try:
            writer.write(chunk)
            await writer.drain()
        except ConnectionError:
            return b""
        try:
            data = await asyncio.wait_for(reader.read(65536), 0.25)
        except TimeoutError:
            continue
        except ConnectionError:
            return b""
        if not data:
            return b""
        rest = await reader.read()
        return data + rest
    return None


async def test_half_sent_requests_are_timed_out(api_world, tenant):
    server = await _raw_server(api_world, header_timeout_seconds=1.0, body_timeout_seconds=1.0)
    try:
        # headers that never end
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        answer = await _closed_while_trickling(reader, writer, b"X-Slow: y\r\n")
        writer.close()
        assert answer is not None, "a request whose headers never end held its connection"
        # a body that never ends
        reader, writer = await asyncio.open_connection(server.host, server.port)
        token = tenant.tokens["admin"]
        writer.write(f"POST {I} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                     "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{".encode())
        answer = await _closed_while_trickling(reader, writer, b" ")
        writer.close()
        assert answer is not None, "a request whose body never ends held its connection"
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer[:200]
        # a prompt client is unaffected
        reader, writer = await asyncio.open_connection(server.host, server.port)
        writer.write(b"GET /v1/openapi.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert (await reader.read()).startswith(b"HTTP/1.1 200")
        writer.close()
    finally:
        await server.close()


# ------------------------------------------------------------------------------- 9.8 the spec's examples

async def test_the_spec_callback_path_completes_the_step_with_the_same_checks(api_world, tenant):
    iid, cb = await waiting_for_callback(api_world, tenant)
    path = f"/v1/workflows/{iid}/steps/1/complete"  # {{payos.webhook_url}}/workflows/{{instance.id}}/steps/1/complete
    raw, headers = signed("not-the-token", {"status": "completed", "result": {"risk_score": 0.3}})
    status, problem = await api_world.call("POST", path, tenant, "integration", data=raw, headers=headers)
    assert status == 401 and "does not match" in problem["detail"]
    status, _ = await api_world.call("POST", path, tenant, "viewer", data=raw, headers=headers)
    assert status == 403
    raw, headers = signed(cb["token"], {"status": "completed", "result": {"risk_score": 0.3}})
    status, _ = await api_world.call("POST", path, await api_world.new_tenant(), "integration", data=raw,
                                     headers=headers)
    assert status == 404
    _, done = await api_world.call("POST", path + "?wait=true", tenant, "integration", data=raw, headers=headers,
                                   expect=200)
    assert done["status"] == "COMPLETED" and done["steps"][-1]["external_response"] == {"risk_score": 0.3}
    status, _ = await api_world.call("POST", f"{I}/{iid}/steps/1/complete-external", tenant, "integration",
                                     data=raw, headers=headers)
    assert status == 409  # one receipt per attempt, whichever path delivered it


async def test_agent_permissions_name_templates_by_slug_as_in_story_29_12(api_world, tenant):
    from core.builtin import builtin_template

    expense = {**cfo_approval("Expense Report", None)}
    procurement = await create(api_world, tenant, {**builtin_template("procurement_approval"),
                                                   "trigger_type": "manual", "trigger_config": {}})
    expense_template = await create(api_world, tenant, expense)
    agent = tenant.ids["agent"]
    story = {"agent_id": agent, "workflow_permissions": {
        "can_initiate": ["procurement_approval", "expense_report"],
        "can_approve": {"procurement_approval": {"max_amount": 1000, "step_names": ["Manager Approval"]}}}}
    _, stored = await api_world.call("POST", f"/v1/agents/{agent}/workflow-permissions", tenant, json=story,
                                     expect=200)
    permissions = stored["workflow_permissions"]
    assert sorted(permissions["can_initiate"]) == sorted([procurement["id"], expense_template["id"]])
    assert permissions["can_approve"] == {procurement["id"]: {
        "max_amount": 1000, "step_names": ["Manager Approval"], "currencies": [], "hours": [],
        "counts_toward_quorum": True, "escalate_above_limit": True, "daily_budget": None}}  # bounds spelled out
    # the agent may now start it, by id as stored
    await api_world.call("POST", I, tenant, "agent", json={"template_id": expense_template["id"]}, expect=202)
    # names work too; unknown and ambiguous references are refused, never guessed
    named = {"workflow_permissions": {"can_initiate": ["Expense Report"], "can_approve": {}}}
    _, stored = await api_world.call("POST", f"/v1/agents/{agent}/workflow-permissions", tenant, json=named,
                                     expect=200)
    assert stored["workflow_permissions"]["can_initiate"] == [expense_template["id"]]
    status, problem = await api_world.call("POST", f"/v1/agents/{agent}/workflow-permissions", tenant, json={
        "workflow_permissions": {"can_initiate": ["travel_request"], "can_approve": {}}})
    assert status == 422 and problem["pointer"] == "/workflow_permissions/can_initiate/0"
    await create(api_world, tenant, expense)  # a second ACTIVE "Expense Report"
    status, problem = await api_world.call("POST", f"/v1/agents/{agent}/workflow-permissions", tenant, json=named)
    assert status == 422 and "ambiguous" in problem["detail"]
    # another tenant's template of the same name is not this tenant's
    other = await api_world.new_tenant()
    status, _ = await api_world.call("POST", f"/v1/agents/{other.ids['agent']}/workflow-permissions", other,
                                     json={"workflow_permissions": {"can_initiate": ["procurement_approval"]}})
    assert status == 422


async def test_following_the_epic_on_a_seeded_stack_starts_one_instance_per_transfer(api_world, database_url):
    """The seed's built-ins (same trigger as the epic's procurement example, and a 50,000 threshold) are
    seeded inactive, so the newcomer's own template is the only one that matches."""
    import time
    import uuid

    import asyncpg

    from core.builtin import builtin_template
    from deploy import seed
    from schemas.records import TransferEvent
    from store.migrate import migrate_async

    name = f"seed_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(database_url)
    await admin.execute(f"CREATE DATABASE {name}")
    url = database_url.rsplit("/", 1)[0] + f"/{name}"
    engine = api_world.engine
    try:
        await migrate_async(url)
        await seed.seed(url, engine.bootstrap, engine.prefix, status=seed.builtin_status({}))
        conn = await asyncpg.connect(url)
        try:
            statuses = {r["id"]: r["status"] for r in await conn.fetch("SELECT id, status FROM workflow_templates")}
        finally:
            await conn.close()
        assert statuses == {seed.template_id(n): "PAUSED" for n in seed.BUILTIN_NAMES}
        # the newcomer creates the epic's procurement example in tenant acme (what POST /templates publishes)
        epic = builtin_template("procurement_approval")
        await engine.publish_template("wft_newcomer_procurement", epic, tenant_id=seed.TENANT)
        await api_world.engine_knows("wft_newcomer_procurement")
        for builtin in ("procurement_approval", "trade_approval"):
            await api_world.engine_knows(seed.template_id(builtin))
        event_id = f"evt_{uuid.uuid4().hex[:8]}"
        await engine.send_transfer(TransferEvent(
            event_id=event_id, transfer_id=f"tr_{event_id}", event_type="transfer.created", tenant_id=seed.TENANT,
            amount_minor=6_000_000, currency="USD", source_account="acc_1", destination_account="acc_2",
            metadata={"type": "procurement"}, occurred_at=int(time.time() * 1000)))

        def started() -> list:
            return [e for events in list(engine.events.values()) for e in events
                    if isinstance(e, ev.InstanceStarted) and e.tenant_id == seed.TENANT]

        await engine.wait_until(lambda: started(), message="an instance of the newcomer's template")
        await asyncio.sleep(1.0)  # the matcher starts every match of one event in one transaction
        assert [e.template_id for e in started()] == ["wft_newcomer_procurement"]
        # asked for explicitly (FLOWLINE_SEED_BUILTINS=active), a second seed activates them; inactive never
        # re-pauses
        await seed.seed(url, engine.bootstrap, engine.prefix, status="ACTIVE")
        await seed.seed(url, engine.bootstrap, engine.prefix, status="PAUSED")
        conn = await asyncpg.connect(url)
        try:
            statuses = {r["id"]: r["status"] for r in await conn.fetch("SELECT id, status FROM workflow_templates")}
        finally:
            await conn.close()
        assert statuses == {seed.template_id(n): "ACTIVE" for n in seed.BUILTIN_NAMES}
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


async def test_deactivating_an_inactive_template_succeeds(api_world, tenant):
    template = await create(api_world, tenant)
    _, first = await api_world.call("DELETE", f"/v1/workflows/templates/{template['id']}", tenant, expect=200)
    _, again = await api_world.call("DELETE", f"/v1/workflows/templates/{template['id']}", tenant, expect=200)
    assert first["status"] == again["status"] == "PAUSED"


# ------------------------------------------------------------------------------- garbage at the callback

async def test_random_bytes_at_the_callback_endpoints_never_get_a_5xx(api_world, tenant):
    import random

    iid, cb = await waiting_for_callback(api_world, tenant)
    rng = random.Random(20261130)
    client = api_world.client
    content_types = ["application/json", "text/plain", "application/octet-stream", "application/x-www-form-urlencoded",
                     "application/merge-patch+json", "", "application/json; charset=latin-1"]
    valid = b'{"status": "completed", "result": {"ok": true}}'

    def body() -> bytes:
        kind = rng.randrange(6)
        if kind == 0:
            return rng.randbytes(rng.randrange(0, 2048))
        if kind == 1:
            cut = valid[:rng.randrange(len(valid))]
            return cut + rng.randbytes(rng.randrange(8))
        if kind == 2:
            return b"[" * rng.randrange(1, 5000) + b"]" * rng.randrange(0, 5000)
        if kind == 3:
            return ('{"status": "completed", "result": ' + rng.choice(["NaN", "1e999", '"\\ud800"', "-0", "[]", "null",
                                                                       '{"a":' * 80 + "1" + "}" * 80]) + "}").encode()
        if kind == 4:
            return bytes(rng.choice(b'{}[]":,0123456789aeflnrstu\\ \n') for _ in range(rng.randrange(1, 300)))
        return valid

    def signature(raw: bytes) -> str:
        from core.signing import sign_payload

        kind = rng.randrange(5)
        if kind == 0:
            return sign_payload(cb["token"].encode(), raw, int(time.time()))
        if kind == 1:
            alphabet = [chr(c) for c in (*range(32, 127), *range(0xA0, 0x100))]  # what a header line can carry
            return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 200)))
        if kind == 2:
            return f"t={rng.choice(['', 'x', '-1', '99999999999999999999', str(int(time.time()))])},v1={'0' * 64}"
        if kind == 3:
            return "t=1,v1=" + "a" * rng.randrange(0, 5000)
        return ""

    import time

    statuses: dict[int, int] = {}
    for n in range(300):
        raw = body()
        step = rng.choice(["1", "0", "2", "101", "-1", "x", "1" * 30])
        target = rng.choice([iid, iid + "x", "wfi_" + "0" * 26, "%00", "a" * 300])
        path = rng.choice([f"{I}/{target}/steps/{step}/complete-external",
                           f"/v1/workflows/{target}/steps/{step}/complete"])
        headers = {**tenant.auth(rng.choice(["integration", "operator", "viewer", "admin"])),
                   "X-Flowline-Signature": signature(raw)}
        content_type = rng.choice(content_types)
        if content_type:
            headers["Content-Type"] = content_type
        if rng.random() < 0.2:
            headers["Idempotency-Key"] = rng.choice(["k", "x" * 201, f"key-{n}"])
        response = await client.post(path, data=raw, headers=headers)
        text = await response.text()
        statuses[response.status] = statuses.get(response.status, 0) + 1
        assert response.status < 500, (path, raw[:200], headers, response.status, text[:500])
        if response.status >= 400:
            assert response.content_type == "application/problem+json", (response.status, text[:200])
    assert len(statuses) >= 4, statuses  # the garbage reached many different checks
