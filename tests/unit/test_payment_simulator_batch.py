"""The payment simulator answers a fetched batch with one ledger fsync, each key executed once (issue 15)."""

from __future__ import annotations

import os

from deploy.payment_simulator import PaymentSimulator, read_ledger
from schemas.records import PaymentCommand


def command(key: str, transfer_id: str, **params) -> PaymentCommand:
    return PaymentCommand(idempotency_key=key, action="execute_transfer", tenant_id="t1",
                          params={"transfer_id": transfer_id, **params}, requested_at=0)


def simulator(tmp_path) -> PaymentSimulator:
    sim = PaymentSimulator(bootstrap_servers="unused:9092", ledger=tmp_path / "ledger.jsonl")
    for n in range(3):
        sim.book.learn(f"tr_{n}", tenant_id="t1", amount=10 + n, currency="USD")
    return sim


def test_a_batch_is_written_to_the_ledger_with_one_fsync_before_any_answer(tmp_path, monkeypatch):
    sim = simulator(tmp_path)
    syncs = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (syncs.append(fd), real_fsync(fd)))
    answers = sim.execute_all([command(f"wfi_{n}:2:v1", f"tr_{n}") for n in range(3)])
    assert len(syncs) == 1
    assert [a.status for a in answers] == ["succeeded"] * 3
    assert [e["idempotency_key"] for e in read_ledger(sim.ledger)] == [f"wfi_{n}:2:v1" for n in range(3)]
    assert [e["params"]["amount"] for e in read_ledger(sim.ledger)] == [10, 11, 12]  # the record's amount


def test_a_key_repeated_in_one_batch_executes_once_and_gets_the_first_answer_twice(tmp_path):
    sim = simulator(tmp_path)
    first, again, other = sim.execute_all([command("wfi_a:2:v1", "tr_0"), command("wfi_a:2:v1", "tr_0"),
                                           command("wfi_b:2:v1", "tr_0")])
    assert first == again and first.status == "succeeded"
    assert other.status == "failed" and "already executed" in other.error  # each transfer once, across keys
    assert [e["idempotency_key"] for e in read_ledger(sim.ledger)] == ["wfi_a:2:v1", "wfi_b:2:v1"]
    assert (sim.duplicates, sim.executed_now) == (1, 2)


def test_a_batch_of_answers_from_the_ledger_writes_nothing(tmp_path, monkeypatch):
    sim = simulator(tmp_path)
    sim.execute_all([command("wfi_a:2:v1", "tr_0")])
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(AssertionError("fsync without an entry")))
    (answer,) = sim.execute_all([command("wfi_a:2:v1", "tr_0")])
    assert answer.status == "succeeded" and sim.executed_now == 0
    assert len(read_ledger(sim.ledger)) == 1
