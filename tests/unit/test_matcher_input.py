"""What the trigger matcher accepts on payments.transfers, and the sentence it files in the DLQ otherwise."""

from __future__ import annotations

import json

import pytest

from core.commands import Advance
from schemas.codec import Codec
from schemas.records import DomainEvent, TransferEvent
from streams.matcher import InvalidInput, parse_transfer, tenant_of

CODEC = Codec()
EVENT = TransferEvent(event_id="evt_1", transfer_id="tr_1", event_type="transfer.created", tenant_id="acme",
                      amount_minor=123_456, currency="USD", currency_exponent=2, source_account="a",
                      destination_account="b", metadata={"type": "procurement"}, occurred_at=1)


def test_an_avro_transfer_event_is_read_as_it_was_written():
    assert parse_transfer(CODEC, CODEC.encode(EVENT)) == EVENT


def test_a_json_transfer_event_with_the_same_fields_is_accepted_and_fills_defaults():
    event = parse_transfer(CODEC, json.dumps({"event_id": "evt_2", "amount_minor": 500, "currency": "EUR",
                                              "metadata": {"type": "procurement"}}).encode())
    assert (event.event_id, event.transfer_id, event.event_type) == ("evt_2", "evt_2", "transfer.created")
    assert event.to_trigger()["amount"] == 5


@pytest.mark.parametrize(("raw", "reason"), [
    (b"", "empty record"),
    (b"{not json", "not valid JSON"),
    (b'{"event_id": "e", "amount_minor": NaN, "currency": "USD"}', "NaN is not a JSON number"),
    (b'[1, 2]', "not Avro single-object encoding"),
    (b'{"event_id": "e"}', "needs event_type"),
    (b'{"event_id": "e", "amount_minor": 5}', "lacks currency"),
    (b'{"event_id": "e", "event_type": "x", "customer": 1}', "unknown fields customer; put them under data"),
    (b'{"event_id": "e", "event_type": "x", "data": [1]}', "data must be an object"),
    (b'{"event_id": "e", "amount_minor": 1, "currency": "USD", "colour": "red"}', "unknown fields colour"),
    (b"\x00\x01\x02", "not Avro single-object encoding"),
])
def test_bad_input_is_refused_with_a_reason(raw, reason):
    with pytest.raises(InvalidInput, match=reason):
        parse_transfer(CODEC, raw)


def test_an_avro_record_of_another_type_is_refused():
    with pytest.raises(InvalidInput, match="expected a TransferEvent or DomainEvent, got Advance"):
        parse_transfer(CODEC, CODEC.encode(Advance(command_id="c", instance_id="i")))


def test_a_json_domain_event_exposes_its_data_at_the_top_of_the_trigger():
    event = parse_transfer(CODEC, json.dumps({"event_id": "evt_9", "event_type": "account.opened", "tenant_id": "acme",
                                              "data": {"customer_id": "c_1", "metadata": {"email": "a@b"}}}).encode())
    assert isinstance(event, DomainEvent)
    trigger = event.to_trigger()
    assert trigger["customer_id"] == "c_1" and trigger["event_type"] == "account.opened"
    assert trigger["id"] == "evt_9" and trigger["metadata"] == {"email": "a@b"}


def test_an_avro_domain_event_round_trips():
    event = DomainEvent(event_id="evt_10", event_type="limit.changed", tenant_id="acme", occurred_at=5,
                        data={"limit": 1000})
    assert parse_transfer(CODEC, CODEC.encode(event)) == event


# --------------------------------------------------------------------------- issue 9.3: complete validation
def _transfer(**fields) -> bytes:
    return json.dumps({"event_id": "e", "tenant_id": "acme", "amount_minor": 100, "currency": "USD",
                       **fields}).encode()


@pytest.mark.parametrize(("raw", "reason"), [
    (_transfer(amount_minor="lots"), "amount_minor must be an integer"),
    (_transfer(amount_minor=True), "amount_minor must be an integer"),
    (_transfer(amount_minor=1.5), "amount_minor must be an integer"),
    (_transfer(amount_minor=-5), "amount_minor must be between 0 and"),
    (_transfer(amount_minor=10**19), "amount_minor must be between 0 and"),
    (_transfer(currency="usd"), "currency must be an ISO 4217 code"),
    (_transfer(currency="XYZ"), "currency must be an ISO 4217 code"),
    (_transfer(currency=840), "currency must be a string"),
    (_transfer(currency="JPY", currency_exponent=2), "currency_exponent of JPY is 0, got 2"),
    (_transfer(event_id=""), "event_id must not be empty"),
    (_transfer(event_id="x" * 300), "event_id has 300 characters"),
    (_transfer(tenant_id=7), "tenant_id must be a string"),
    (_transfer(transfer_id="tr\n1"), "transfer_id contains control characters"),
    (_transfer(occurred_at=-1), "occurred_at must be epoch milliseconds"),
    (_transfer(occurred_at="yesterday"), "occurred_at must be an integer"),
    (_transfer(metadata=["a"]), "metadata must be an object"),
    (_transfer(metadata={"type": 5}), "metadata values must be strings"),
    (_transfer(metadata={f"k{i}": "v" for i in range(65)}), "metadata has 65 entries"),
    (_transfer(metadata={"memo": "m" * 5000}), "metadata 'memo' has 5000 characters"),
    (_transfer(metadata={"memo": "m" * 300_000}), "bytes; at most 262144 are accepted"),
    (b'{"event_id": "e", "event_type": "x", "tenant_id": "acme", "data": ' + b'{"a": ' * 20 + b"1"
     + b"}" * 20 + b"}", "nested deeper than 16 levels"),
    (b'{"event_id": "e", "event_type": "x", "tenant_id": 5}', "tenant_id must be a string"),
    (b"{" + b'"a": {' * 40_000, "not valid JSON"),
])
def test_an_event_that_cannot_become_a_valid_trigger_is_refused_with_the_reason(raw, reason):
    with pytest.raises(InvalidInput, match=reason):
        parse_transfer(CODEC, raw)


def test_an_avro_event_is_validated_like_a_json_one():
    bad = TransferEvent(**{**EVENT.__dict__, "currency": "ZZZ"})
    with pytest.raises(InvalidInput, match="currency must be an ISO 4217 code"):
        parse_transfer(CODEC, CODEC.encode(bad))
    negative = TransferEvent(**{**EVENT.__dict__, "amount_minor": -1})
    with pytest.raises(InvalidInput, match="amount_minor must be between 0"):
        parse_transfer(CODEC, CODEC.encode(negative))


def test_a_json_transfer_without_an_exponent_takes_the_currencys_own():
    yen = parse_transfer(CODEC, _transfer(currency="JPY", amount_minor=500))
    assert yen.currency_exponent == 0 and yen.to_trigger()["amount"] == 500
    dinar = parse_transfer(CODEC, _transfer(currency="KWD", amount_minor=1500))
    assert dinar.currency_exponent == 3 and dinar.to_trigger()["amount"] == 1.5


# --------------------------------------------------------------------------- issue 10.1: an event's tenant
def test_an_event_must_name_its_tenant_unless_its_topic_is_bound_to_one():
    anonymous = parse_transfer(CODEC, _transfer(tenant_id=""))
    with pytest.raises(InvalidInput, match="names no tenant_id"):
        tenant_of(anonymous, "payments.transfers", {})
    assert tenant_of(anonymous, "payments.transfers", {"payments.transfers": "acme"}) == "acme"
    named = parse_transfer(CODEC, _transfer(tenant_id="globex"))
    assert tenant_of(named, "payments.transfers", {}) == "globex"
    with pytest.raises(InvalidInput, match=r"names tenant 'globex', but topic payments\.transfers is bound"):
        tenant_of(named, "payments.transfers", {"payments.transfers": "acme"})


def test_topic_tenant_bindings_are_read_from_the_environment(monkeypatch):
    from streams.settings import EngineSettings

    monkeypatch.setenv("FLOWLINE_TRIGGER_TOPIC_TENANTS", "payroll.acme=acme, payroll.globex = globex")
    assert EngineSettings().trigger_topic_tenants == {"payroll.acme": "acme", "payroll.globex": "globex"}
    monkeypatch.setenv("FLOWLINE_TRIGGER_TOPIC_TENANTS", "payroll.acme")
    with pytest.raises(ValueError, match="is not topic=tenant"):
        EngineSettings()
