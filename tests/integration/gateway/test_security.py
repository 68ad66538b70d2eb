"""Issue 10 at the gateway: the requester's absurd amounts are refused, a secret sent to a new host needs
confirming (real gateway, broker, engine and database)."""

from __future__ import annotations

import pytest

from tests.integration.gateway.test_api import I, T, create

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.mark.parametrize("amount", [-5, 1e13, "1", True])
async def test_a_manual_trigger_with_a_negative_or_absurd_amount_is_refused(api_world, tenant, amount):
    template = await create(api_world, tenant)
    status, problem = await api_world.call("POST", I, tenant, "requester", json={
        "template_id": template["id"], "trigger_data": {"id": "tr_REAL_5M_TRANSFER", "amount": amount}})
    assert status == 422 and problem["pointer"] == "/trigger_data/amount"


def _erp(url: str) -> dict:
    return {"name": "ERP sync", "trigger_type": "manual", "steps": [{"type": "external", "name": "Push", "config": {
        "url": url, "method": "POST", "headers": {"Authorization": "Bearer {{secrets.erp_key}}"}}}]}


async def test_pointing_a_stored_secret_at_another_host_needs_confirmation(api_world, tenant):
    created = await create(api_world, tenant, _erp("https://erp.example/api"))
    path = f"{T}/{created['id']}"
    await api_world.call("POST", f"{path}/secrets", tenant, json={"name": "erp_key", "value": "k"}, expect=201)
    await api_world.call("PUT", path, tenant, json=_erp("https://erp.example/api/v2"), expect=200)
    status, problem = await api_world.call("PUT", path, tenant, json=_erp("https://collector.example/x"))
    assert status == 409 and "erp_key" in problem["detail"]
    _, v3 = await api_world.call("PUT", f"{path}?confirm_secrets=erp_key", tenant,
                                 json=_erp("https://collector.example/x"), expect=200)
    assert v3["version"] == 3
    # without a stored secret there is nothing to confirm
    plain = await create(api_world, tenant, _erp("https://erp.example/api"))
    await api_world.call("PUT", f"{T}/{plain['id']}", tenant, json=_erp("https://other.example/"), expect=200)
