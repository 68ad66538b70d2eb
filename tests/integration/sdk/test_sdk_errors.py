"""RFC 7807 problems arrive as typed exceptions, list iterators follow cursors past one page, and the sync
Client is the async one's twin (run in a thread: a blocking client may not run inside an event loop)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from flowline.client import Client, Conflict, Forbidden, NotFound, Unauthorized, ValidationFailed
from tests.integration.sdk.conftest import ADMIN, CFO, MANAGER, REQUESTER, VIEWER

pytestmark = pytest.mark.asyncio(loop_scope="session")

TINY = {"name": "Tiny", "trigger_type": "manual", "steps": [
    {"type": "approval", "name": "OK?", "config": {"approvers": {"type": "role", "value": "finance_manager"}}}]}


async def test_problems_become_typed_exceptions(sdk):
    async with sdk.client(ADMIN) as admin:
        with pytest.raises(NotFound) as not_found:
            await admin.get_instance("wfi_does_not_exist")
        assert not_found.value.status == 404 and "wfi_does_not_exist" in not_found.value.detail

        with pytest.raises(ValidationFailed) as invalid:
            await admin.create_template({"name": "Broken", "trigger_type": "manual", "steps": [
                {"type": "approval", "name": "No approvers", "config": {}},
                {"type": "condition", "name": "Bad jump", "config": {"expression": "true", "if_true": "skip_to:9"}}]})
        pointers = {e.pointer for e in invalid.value.errors}
        assert any(p.startswith("/steps/0/config") for p in pointers), pointers
        assert any(p.startswith("/steps/1/config") for p in pointers), pointers

        with pytest.raises(Unauthorized):
            await admin.with_token("fl_not_a_token").list_templates()
        with pytest.raises(Forbidden):
            await admin.with_token(VIEWER).start_instance("wf_procurement_approval", {"id": "tr_v", "amount": 1})

        started = await admin.with_token(REQUESTER).start_instance(
            "wf_procurement_approval", {"id": f"tr_{uuid.uuid4().hex[:8]}", "amount": 2500}, wait=True,
            idempotency_key=f"errors-{uuid.uuid4().hex}")
        await admin.wait_for_instance(started.id, lambda i: i.blocking.get("waiting_for") == "approval")
        with pytest.raises(Conflict) as conflict:
            await admin.with_token(MANAGER).approve(started.id, 2, "not my step", wait=True)
        assert "not among the approvers" in conflict.value.detail
        key = f"replay-{uuid.uuid4().hex}"
        first = await admin.with_token(CFO).approve(started.id, 2, "fine", wait=True, idempotency_key=key)
        with pytest.raises(ValidationFailed) as reused:  # the same key with another body
            await admin.with_token(CFO).approve(started.id, 2, "different", wait=True, idempotency_key=key)
        assert reused.value.pointer == "/header/Idempotency-Key"
        assert first.status == "ACTIVE"


async def test_iterators_follow_cursors_past_one_page(sdk):
    async with sdk.client(REQUESTER) as requester:
        ids = set()
        for n in range(5):
            started = await requester.start_instance("wf_model_deployment", {"model": f"m{n}"},
                                                     idempotency_key=f"page-{uuid.uuid4().hex}")
            ids.add(started.instance_id)
        seen = []
        for _ in range(100):
            first_page = await requester.list_instances(template_id="wf_model_deployment", limit=2)
            seen = [i.id async for i in requester.iter_instances(template_id="wf_model_deployment", page_size=2)]
            if ids <= set(seen):
                break
            await asyncio.sleep(0.2)
    assert len(first_page.items) == 2 and first_page.next_cursor
    assert ids <= set(seen) and len(seen) == len(set(seen))  # every instance once, across at least 3 pages


async def test_the_sync_client_iterates_templates_across_pages(sdk):
    def read() -> tuple[list[str], list[str]]:
        with Client(sdk.url, VIEWER) as client:
            paged = [t.id for t in client.iter_templates(page_size=2)]
            whole = [t.id for t in client.list_templates(limit=200).items]
            return paged, whole

    paged, whole = await asyncio.to_thread(read)
    assert len(whole) >= 5 and paged == whole
