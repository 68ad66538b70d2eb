"""Every process builds its codec with `Codec.from_env`, so `FLOWLINE_SCHEMA_REGISTRY_URL` fails fast.

Why: the README promises that setting the registry URL (whose HTTP client is not written yet) stops the
process at start-up; a process that built a plain `Codec()` silently ignored it and wrote single-object
encoded records to a cluster that expected Confluent framing.
"""

from __future__ import annotations

import pytest

from deploy.payment_simulator import PaymentSimulator
from gateway.calls import Gateway
from gateway.settings import GatewaySettings
from handlers.action import KafkaPaymentGateway
from handlers.runtime import HandlerRuntime
from handlers.settings import HandlerSettings
from schemas.codec import REGISTRY_URL_ENV
from store.projector import Projector
from streams.app import Engine
from streams.settings import EngineSettings


async def _handle(request):  # pragma: no cover - never called
    raise AssertionError


BUILDERS = {
    "engine": lambda: Engine(EngineSettings()),
    "handlers": lambda: HandlerRuntime("notification", _handle, HandlerSettings.from_env("notification")),
    "payment gateway of the action handler": lambda: KafkaPaymentGateway(
        bootstrap_servers="127.0.0.1:1", commands_topic="c", results_topic="r"),
    "projector": lambda: Projector(bootstrap_servers="127.0.0.1:1", database_url="postgresql://x/y"),
    "gateway": lambda: Gateway(GatewaySettings(), pool=None, producer=None),
    "payment simulator": lambda: PaymentSimulator(bootstrap_servers="127.0.0.1:1"),
}


@pytest.mark.parametrize("process", BUILDERS)
def test_registry_url_fails_fast(process: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REGISTRY_URL_ENV, "http://registry.invalid:8081")
    with pytest.raises(RuntimeError, match=REGISTRY_URL_ENV):
        BUILDERS[process]()


@pytest.mark.parametrize("process", BUILDERS)
def test_without_registry_url_the_process_builds(process: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REGISTRY_URL_ENV, raising=False)
    assert BUILDERS[process]() is not None
