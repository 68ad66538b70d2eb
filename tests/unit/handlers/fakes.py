"""Fakes for the handler ports that have no fake in production code: DNS and the HTTP transport."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from core.effects import StepRequest
from handlers.http import HttpResponse, NetworkPolicy, SafeHttpClient

PUBLIC_IP = "93.184.216.34"


@dataclass
class FakeResolver:
    names: dict[str, list[str]] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)

    async def resolve(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        return self.names.get(host, [PUBLIC_IP])


@dataclass
class Sent:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes | None


@dataclass
class FakeTransport:
    """Answers by URL: a response, or an exception to raise."""

    routes: dict[str, HttpResponse | Exception] = field(default_factory=dict)
    sent: list[Sent] = field(default_factory=list)

    def route(self, url: str, status: int = 200, body: bytes = b"{}", headers: Mapping[str, str] | None = None):
        self.routes[url] = HttpResponse(status=status, headers=dict(headers or {"content-type": "application/json"}),
                                        body=body, url=url)

    async def send(self, method, url, headers, body):
        self.sent.append(Sent(method, url, dict(headers), body))
        answer = self.routes.get(url)
        if answer is None:
            return HttpResponse(status=404, headers={}, body=b"", url=url)
        if isinstance(answer, Exception):
            raise answer
        return answer


def client(transport: FakeTransport, resolver: FakeResolver | None = None, allowed=()) -> SafeHttpClient:
    return SafeHttpClient(transport, resolver or FakeResolver(), NetworkPolicy(allowed))


def step_request(kind: str, config: dict, *, step: int = 2, attempt: int = 1, suffix: str = "",
                 instance_id: str = "wfi_1", template_id: str = "tpl_1", tenant_id: str = "t1",
                 trigger: dict | None = None) -> StepRequest:
    return StepRequest(request_id=f"{instance_id}:{step}:{attempt}{suffix}", instance_id=instance_id,
                       tenant_id=tenant_id, template_id=template_id, template_version=1, step=step,
                       step_name="Some step", step_key="some_step", kind=kind, attempt=attempt, config=config,
                       context={"trigger": trigger} if trigger is not None else {},
                       requested_at=int(time.time() * 1000))
