"""The SSRF guard and the redirect logic of the outgoing HTTP client, with fake DNS and transport."""

from __future__ import annotations

import pytest

from handlers.http import BlockedDestination, InvalidUrl, NetworkPolicy, TooManyRedirects
from tests.unit.handlers.fakes import FakeResolver, FakeTransport, client


@pytest.mark.parametrize("address", [
    "127.0.0.1", "10.1.2.3", "172.16.0.9", "192.168.1.1", "169.254.169.254", "224.0.0.1", "240.0.0.1",
    "0.0.0.0", "100.64.0.1", "::1", "fe80::1", "fc00::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
])
def test_private_loopback_link_local_multicast_and_reserved_addresses_are_refused(address):
    assert NetworkPolicy().refusal(address) is not None


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address):
    assert NetworkPolicy().refusal(address) is None


def test_an_allowed_cidr_opens_exactly_that_range():
    policy = NetworkPolicy(["127.0.0.0/8", "10.20.0.0/16"])
    assert policy.refusal("127.0.0.1", 443) is None
    assert policy.refusal("10.20.3.4", 80) is None
    assert policy.refusal("10.21.0.1", 443) is not None
    assert policy.refusal("192.168.0.1", 443) is not None


def test_allow_list_entries_carry_ports():
    policy = NetworkPolicy(["10.0.0.5:8443", "127.0.0.0/8", "[fd00::/8]:9000", "172.16.0.0/12:*"])
    assert policy.refusal("10.0.0.5", 8443) is None
    assert policy.refusal("10.0.0.5", 8701) is not None  # another service on the ERP's host
    assert policy.refusal("10.0.0.5", 443) is not None
    assert policy.refusal("127.0.0.1", 443) is None and policy.refusal("127.0.0.1", 80) is None
    assert policy.refusal("127.0.0.1", 8701) is not None  # a bare CIDR opens the web ports only
    assert policy.refusal("fd00::7", 9000) is None and policy.refusal("fd00::7", 9001) is not None
    assert policy.refusal("172.16.9.9", 5432) is None  # `*` written out: every port
    assert policy.refusal("10.0.0.5") is not None  # port unknown: only `*` entries admit it


@pytest.mark.parametrize("entry", ["10.0.0.5:0", "10.0.0.5:70000", "10.0.0.5:http", "[fd00::/8]443", "nonsense"])
def test_malformed_allow_list_entries_are_refused_at_start(entry):
    with pytest.raises(ValueError):
        NetworkPolicy([entry])


async def test_a_redirect_to_another_port_of_an_allowed_address_is_refused():
    transport = FakeTransport()
    transport.route("http://erp.internal:8080/po", 302, b"", {"location": "http://erp.internal:8701/health"})
    resolver = FakeResolver({"erp.internal": ["10.0.0.5"]})
    with pytest.raises(BlockedDestination) as info:
        await client(transport, resolver, allowed=["10.0.0.5:8080"]).request("GET", "http://erp.internal:8080/po")
    assert "8701" in str(info.value)
    assert [s.url for s in transport.sent] == ["http://erp.internal:8080/po"]


async def test_the_connecting_resolver_checks_the_port_too():
    from handlers.http import GuardedResolver

    guarded = GuardedResolver(NetworkPolicy(["127.0.0.1:8080"]))
    assert [r["port"] for r in await guarded.resolve("127.0.0.1", 8080)] == [8080]
    with pytest.raises(OSError):
        await guarded.resolve("127.0.0.1", 8701)


def test_handler_settings_parse_ported_entries():
    from handlers.settings import HandlerSettings

    settings = HandlerSettings.from_env("external", {"FLOWLINE_ALLOW_PRIVATE_NETWORKS": "10.0.0.5:8443, 127.0.0.1"})
    policy = NetworkPolicy(settings.allow_private_networks)
    assert policy.refusal("10.0.0.5", 8443) is None and policy.refusal("10.0.0.5", 8701) is not None


async def test_a_host_that_resolves_to_a_private_address_is_refused_before_anything_is_sent():
    transport = FakeTransport()
    resolver = FakeResolver({"erp.internal.example": ["10.0.0.5"]})
    with pytest.raises(BlockedDestination) as info:
        await client(transport, resolver).request("GET", "https://erp.internal.example/po/1")
    assert not info.value.retryable
    assert transport.sent == []


async def test_a_host_with_one_private_address_among_public_ones_is_refused():
    resolver = FakeResolver({"mixed.example": ["93.184.216.34", "127.0.0.1"]})
    with pytest.raises(BlockedDestination):
        await client(FakeTransport(), resolver).request("GET", "http://mixed.example/")


async def test_an_ip_literal_is_checked_without_dns():
    resolver = FakeResolver()
    with pytest.raises(BlockedDestination):
        await client(FakeTransport(), resolver).request("GET", "http://169.254.169.254/latest/meta-data/")
    assert resolver.asked == []


async def test_every_redirect_hop_is_checked_again():
    transport = FakeTransport()
    transport.route("https://partner.example/start", 302, b"", {"location": "http://metadata.internal/secrets"})
    resolver = FakeResolver({"metadata.internal": ["169.254.169.254"]})
    with pytest.raises(BlockedDestination):
        await client(transport, resolver).request("GET", "https://partner.example/start")
    assert [s.url for s in transport.sent] == ["https://partner.example/start"]


async def test_redirects_are_followed_up_to_five_hops():
    transport = FakeTransport()
    for n in range(5):
        transport.route(f"https://a.example/{n}", 307, b"", {"location": f"/{n + 1}"})
    transport.route("https://a.example/5", 200, b'{"ok": true}')
    exchange = await client(transport).request("GET", "https://a.example/0")
    assert exchange.response.status == 200
    assert len(exchange.hops) == 5


async def test_a_sixth_redirect_is_an_error():
    transport = FakeTransport()
    for n in range(6):
        transport.route(f"https://a.example/{n}", 302, b"", {"location": f"/{n + 1}"})
    transport.route("https://a.example/6", 200)
    with pytest.raises(TooManyRedirects):
        await client(transport).request("GET", "https://a.example/0")


async def test_a_303_turns_a_post_into_a_get_without_body():
    transport = FakeTransport()
    transport.route("https://a.example/submit", 303, b"", {"location": "/status"})
    transport.route("https://a.example/status", 200)
    await client(transport).request("POST", "https://a.example/submit", headers={"Content-Type": "x"}, body=b"{}")
    assert (transport.sent[1].method, transport.sent[1].body) == ("GET", None)


async def test_credentials_are_not_forwarded_to_another_host():
    transport = FakeTransport()
    transport.route("https://a.example/x", 307, b"", {"location": "https://b.example/y"})
    transport.route("https://b.example/y", 200)
    await client(transport).request("GET", "https://a.example/x", headers={"Authorization": "Bearer s3cret",
                                                                           "Idempotency-Key": "k"})
    assert "Authorization" not in transport.sent[1].headers
    assert transport.sent[1].headers["Idempotency-Key"] == "k"


@pytest.mark.parametrize("url", ["ftp://a.example/x", "file:///etc/passwd", "http:///nohost", "not a url"])
async def test_only_http_urls_with_a_host_are_called(url):
    with pytest.raises(InvalidUrl):
        await client(FakeTransport()).request("GET", url)
