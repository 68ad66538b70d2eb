"""The development keys are public (they are in the source): outside the dev and test profiles a process
that still has one refuses to start."""

from __future__ import annotations

import base64

import pytest

from gateway.settings import GatewaySettings
from handlers.settings import HandlerSettings
from store.secrets import SecretBox

REAL = {"FLOWLINE_CALLBACK_KEY": "prod-callback", "FLOWLINE_WEBHOOK_SIGNING_KEY": "prod-webhook",
        "FLOWLINE_SECRETS_KEY": base64.b64encode(b"p" * 32).decode()}


@pytest.mark.parametrize("missing", ["FLOWLINE_CALLBACK_KEY", "FLOWLINE_WEBHOOK_SIGNING_KEY"])
def test_a_handler_refuses_to_start_in_production_with_a_development_key(missing):
    env = {**REAL, "FLOWLINE_PROFILE": "prod"}
    del env[missing]
    with pytest.raises(ValueError, match=missing):
        HandlerSettings.from_env("external", env)


def test_a_handler_starts_in_production_with_its_own_keys_and_in_dev_with_the_defaults():
    assert HandlerSettings.from_env("external", {**REAL, "FLOWLINE_PROFILE": "prod"}).callback_key == b"prod-callback"
    assert HandlerSettings.from_env("external", {"FLOWLINE_PROFILE": "dev"})
    assert HandlerSettings.from_env("external", {"FLOWLINE_PROFILE": "test"})


def test_the_secrets_key_refuses_its_development_default_in_production():
    with pytest.raises(ValueError, match="FLOWLINE_SECRETS_KEY"):
        SecretBox.from_env({"FLOWLINE_PROFILE": "prod"})
    assert SecretBox.from_env({**REAL, "FLOWLINE_PROFILE": "prod"})
    assert SecretBox.from_env({"FLOWLINE_PROFILE": "dev"})


@pytest.mark.parametrize("missing", ["FLOWLINE_CALLBACK_KEY", "FLOWLINE_SECRETS_KEY"])
def test_the_gateway_refuses_to_start_in_production_with_a_development_key(monkeypatch, missing):
    for name, value in REAL.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv(missing)
    monkeypatch.setenv("FLOWLINE_PROFILE", "prod")
    with pytest.raises(ValueError, match=missing):
        GatewaySettings()
    monkeypatch.setenv(missing, REAL[missing])
    assert GatewaySettings()
