"""Handler-side placeholders: secrets, tenant and PayOS values, and redaction of secrets from results."""

from __future__ import annotations

import pytest

from handlers.rendering import MissingSecret, Renderer, StaticSecretSource, redact
from tests.unit.handlers.fakes import step_request


async def test_secrets_tenant_and_payos_placeholders_are_filled_in():
    source = StaticSecretSource({"tpl_1": {"erp_api_key": "k-123", "unused": "x"}})
    renderer = Renderer(source, {"t1": {"webhook_url": "https://t1.example/hooks"}}, {"api_url": "https://payos/v1"})
    value = {"headers": {"Authorization": "Bearer {{secrets.erp_api_key}}"}, "url": "{{tenant.webhook_url}}/x",
             "body": {"api": "{{payos.api_url}}", "trigger": "{{trigger.id}}"}}
    rendered, used = await renderer.render(step_request("external", {}), value)
    assert rendered["headers"]["Authorization"] == "Bearer k-123"
    assert rendered["url"] == "https://t1.example/hooks/x"
    assert rendered["body"] == {"api": "https://payos/v1", "trigger": "{{trigger.id}}"}
    assert used == ["k-123"]


async def test_secrets_are_not_loaded_when_nothing_refers_to_them():
    source = StaticSecretSource({"tpl_1": {"k": "v"}})
    await Renderer(source).render(step_request("external", {}), {"url": "https://a.example"})
    assert source.loads == 0


async def test_a_missing_secret_is_named_without_any_value():
    source = StaticSecretSource({"tpl_1": {"other": "very-secret"}})
    with pytest.raises(MissingSecret) as info:
        await Renderer(source).render(step_request("external", {}), {"h": "{{secrets.erp_api_key}}"})
    assert "erp_api_key" in str(info.value)
    assert "very-secret" not in str(info.value)


def test_redact_replaces_secret_values_anywhere_in_a_json_value():
    value = {"headers": {"echo": "Bearer k-123"}, "body": ["k-123", {"k-123": 1}], "status": 200}
    assert redact(value, ["k-123"]) == {"headers": {"echo": "Bearer [redacted]"},
                                        "body": ["[redacted]", {"[redacted]": 1}], "status": 200}
