"""The gateway's idle keep-alive outlasts the clients' own (stop 19: equal limits raced on a POST)."""

import asyncio

import aiohttp

from gateway.app import server_options
from gateway.settings import GatewaySettings


def _aiohttp_client_keepalive() -> float:
    async def read() -> float:
        connector = aiohttp.TCPConnector()
        try:
            return connector._keepalive_timeout
        finally:
            await connector.close()

    return asyncio.run(read())


def test_an_idle_connection_is_dropped_by_the_client_before_the_gateway_closes_it(monkeypatch) -> None:
    monkeypatch.delenv("FLOWLINE_HEADER_TIMEOUT_SECONDS", raising=False)
    gateway_idle = server_options(GatewaySettings())["keepalive_timeout"]
    # with equal limits a client reusing a connection idle for exactly that long races the gateway's close
    # and gets ServerDisconnectedError on a POST, which it must not retry blindly
    assert gateway_idle > _aiohttp_client_keepalive()
