"""Payment integrity: what is paid comes from the payment system, and a transfer is paid at most once.

The attacks of issue 10.3/10.4: a manual trigger that names a real transfer with a made-up amount (1, -5),
and two instances (two manual starts) executing the same transfer. The engine orders the payment itself
(docs/adr/0023): its `PaymentOrder` goes to the payment service as it is (here the fake one), and the
service's answer comes back as the relay reports it (`RecordPaymentResult`).
"""

from __future__ import annotations

import asyncio

import pytest

from core import events as ev
from core.effects import PaymentOrder
from core.payments import MAX_AMOUNT, TransferBook, amount_refusal, expected_facts
from core.types import WorkflowStatus
from handlers.action import ActionHandler, FakePaymentGateway, default_adapters
from handlers.rendering import Renderer, StaticSecretSource
from schemas.records import PaymentResult, payment_command
from tests.unit.handlers.fakes import FakeTransport, client
from tests.unit.harness import Harness, agent, human, workflow

CFO_UNLESS_SMALL = workflow(
    {"type": "condition", "name": "Small?", "config": {"expression": "trigger.amount <= 1000",
                                                        "if_true": "skip_to:Agent OK", "if_false": "continue"}},
    {"type": "approval", "name": "CFO", "config": {"approvers": {"type": "role", "value": "cfo"}}},
    {"type": "approval", "name": "Agent OK", "config": {"approvers": {"type": "role", "value": "ops"}}},
    {"type": "action", "name": "Pay", "config": {"action": "execute_transfer",
                                                 "params": {"transfer_id": "{{trigger.id}}"},
                                                 "retry_config": {"max_retries": 2}}},
)


def payments() -> FakePaymentGateway:
    gateway = FakePaymentGateway()
    gateway.book.learn("tr_REAL_5M_TRANSFER", tenant_id="t_acme", amount=5_000_000, currency="USD")
    gateway.book.learn("tr_small", tenant_id="t_acme", amount=500, currency="USD")
    return gateway


def handler(gateway: FakePaymentGateway) -> ActionHandler:
    return ActionHandler(default_adapters(gateway, client(FakeTransport())), Renderer(StaticSecretSource()))


async def submit(gateway: FakePaymentGateway, order: PaymentOrder) -> PaymentResult:
    """What the engine writes to `payments.commands` for an order, answered by the payment service."""
    return await gateway.submit(payment_command(order), 30)


async def run_to_payment(gateway: FakePaymentGateway, trigger: dict, instance_id: str = "wfi_a") -> Harness:
    h = Harness(CFO_UNLESS_SMALL, instance_id=instance_id)
    h.start(trigger, initiated_by=human("mallory", "requester"))
    if h.current_step == 2:
        h.approve(2, human("carol", "cfo"))
    h.approve(3, agent("agent_1", "ops", max_amount=1000))
    assert h.current_step == 4, h.log_text()
    result = await submit(gateway, h.orders_for(4)[-1])
    h.paid(4, result.status, result.output, error=result.error)
    return h


async def test_a_made_up_small_amount_for_a_real_transfer_pays_nothing():
    gateway = payments()
    h = await run_to_payment(gateway, {"id": "tr_REAL_5M_TRANSFER", "amount": 1})
    assert gateway.executed == {}
    assert h.status is WorkflowStatus.FAILED
    [failed] = h.events_of(ev.StepFailed)
    assert "5000000" in failed.error and "nothing was paid" in failed.error


async def test_a_made_up_currency_pays_nothing():
    gateway = payments()
    h = await run_to_payment(gateway, {"id": "tr_small", "amount": 500, "currency": "JPY"})
    assert gateway.executed == {} and h.status is WorkflowStatus.FAILED


async def test_a_transfer_the_payment_system_does_not_know_is_not_paid():
    gateway = payments()
    h = await run_to_payment(gateway, {"id": "tr_invented", "amount": 5})
    assert gateway.executed == {} and "unknown to the payment system" in h.events_of(ev.StepFailed)[0].error


async def test_a_transfer_of_another_tenant_is_unknown():
    gateway = FakePaymentGateway()
    gateway.book.learn("tr_x", tenant_id="t_globex", amount=5, currency="USD")
    h = await run_to_payment(gateway, {"id": "tr_x", "amount": 5})
    assert gateway.executed == {} and h.status is WorkflowStatus.FAILED


async def test_the_true_facts_pay_the_payment_systems_amount():
    gateway = payments()
    h = await run_to_payment(gateway, {"id": "tr_small", "amount": 500, "currency": "USD"})
    assert h.status is WorkflowStatus.COMPLETED
    [command] = gateway.executed.values()
    assert command.params == {"transfer_id": "tr_small", "amount": 500, "currency": "USD"}


async def test_a_transfer_executes_once_across_instances_and_the_second_says_who_paid():
    gateway = payments()
    first = await run_to_payment(gateway, {"id": "tr_small", "amount": 500}, instance_id="wfi_first")
    second = await run_to_payment(gateway, {"id": "tr_small", "amount": 500}, instance_id="wfi_second")
    assert first.status is WorkflowStatus.COMPLETED
    assert len(gateway.executed) == 1
    assert second.status is WorkflowStatus.FAILED
    [failed] = second.events_of(ev.StepFailed)
    assert "already executed by instance wfi_first" in failed.error
    assert failed.retry_at == 0  # final, not retried


async def test_the_payment_service_refuses_a_second_execution_even_when_both_pay_at_once():
    gateway = payments()
    h1, h2 = Harness(CFO_UNLESS_SMALL, instance_id="wfi_1"), Harness(CFO_UNLESS_SMALL, instance_id="wfi_2")
    for h in (h1, h2):
        h.start({"id": "tr_small", "amount": 500})
        h.approve(3, human("olga", "ops"))
    orders = [h.orders_for(4)[-1] for h in (h1, h2)]
    # both in flight together: only the payment service's one atomic check stands between them
    results = list(await asyncio.gather(*(submit(gateway, order) for order in orders)))
    assert [r.status for r in results] == ["succeeded", "failed"]
    assert "already executed by instance wfi_1" in results[1].error and len(gateway.executed) == 1
    for h, result in zip((h1, h2), results, strict=True):
        h.paid(4, result.status, result.output, error=result.error)
    assert (h1.status, h2.status) == (WorkflowStatus.COMPLETED, WorkflowStatus.FAILED)


async def test_retries_of_one_step_visit_still_get_the_first_payment():
    gateway = payments()
    h = Harness(CFO_UNLESS_SMALL)
    h.start({"id": "tr_small", "amount": 500})
    h.approve(3, human("olga", "ops"))
    first = h.orders_for(4)[-1]
    h.fire_due_timers(30_000)  # the answer was lost: the attempt times out, a retry is due
    assert "no execute_transfer result within 30 s" in h.events_of(ev.StepFailed)[-1].error
    h.fire_due_timers(60_000)
    retry = h.orders_for(4)[-1]
    assert retry is not first and h.step(4).attempt == 2
    assert retry.idempotency_key == first.idempotency_key  # one visit, one payment key
    a = await submit(gateway, first)
    b = await submit(gateway, retry)
    assert (a.status, b.status) == ("succeeded", "succeeded")
    assert a.output == b.output and len(gateway.executed) == 1
    h.paid(4, a.status, a.output)
    assert h.status is WorkflowStatus.COMPLETED


@pytest.mark.parametrize("amount", [-5, -0.01, float("nan"), float("inf"), MAX_AMOUNT + 1, "1000", True])
def test_a_negative_or_absurd_trigger_amount_never_starts_an_instance(amount):
    assert amount_refusal(amount)
    h = Harness(CFO_UNLESS_SMALL)
    h.start({"id": "tr_small", "amount": amount})
    assert h.state is None
    assert "trigger.amount" in h.last_rejection


@pytest.mark.parametrize("amount", [0, 1, 999.99, MAX_AMOUNT, None])
def test_sane_amounts_start(amount):
    assert amount_refusal(amount) is None
    h = Harness(CFO_UNLESS_SMALL)
    h.start({"id": "tr_small", "amount": amount})
    assert h.state is not None


async def test_a_template_can_route_on_the_payment_systems_facts_instead_of_the_requesters():
    verified = workflow(
        {"type": "action", "name": "Verify transfer", "config": {
            "action": "lookup_transfer", "params": {"transfer_id": "{{trigger.id}}"}}},
        {"type": "condition", "name": "Small?", "config": {
            "expression": "steps.verify_transfer.amount <= 1000", "if_true": "skip_to:Pay", "if_false": "continue"}},
        {"type": "approval", "name": "CFO", "config": {"approvers": {"type": "role", "value": "cfo"}}},
        {"type": "action", "name": "Pay", "config": {"action": "execute_transfer",
                                                     "params": {"transfer_id": "{{trigger.id}}"}}})
    gateway = payments()
    h = Harness(verified)
    h.start({"id": "tr_REAL_5M_TRANSFER", "amount": 1}, initiated_by=human("mallory", "requester"))
    h.send(await handler(gateway).handle(h.requests_for(1)[-1]))  # a lookup still goes through the handler
    assert h.step(1).output["amount"] == 5_000_000
    assert h.current_step == 3  # the CFO step is not skipped: the record says 5,000,000
    assert gateway.executed == {}


async def test_one_payment_is_one_command_to_the_payment_service():
    """Issue 15: the instance's facts travel with the payment, no lookup round trip before it."""
    gateway = payments()
    h = await run_to_payment(gateway, {"id": "tr_small", "amount": 500, "currency": "USD"})
    assert h.status is WorkflowStatus.COMPLETED
    assert gateway.submitted == 1


def test_the_payment_service_refuses_facts_that_disagree_with_its_record_atomically():
    book = TransferBook()
    book.learn("tr_1", tenant_id="t_acme", amount=5_000_000, currency="USD")
    lie = expected_facts(trigger={"id": "tr_1", "amount": 1}, params={}, instance_id="wfi_lie")
    assert "5000000" in book.execution_refusal("tr_1", "t_acme", "wfi_lie:4:v1", lie)
    jpy = expected_facts(trigger={"id": "tr_1"}, params={"currency": "JPY"}, instance_id="wfi_jpy")
    assert "JPY" in book.execution_refusal("tr_1", "t_acme", "wfi_jpy:4:v1", jpy)
    truth = expected_facts(trigger={"id": "tr_1", "amount": 5_000_000, "currency": "usd"}, params={},
                           instance_id="wfi_ok")
    assert book.execution_refusal("tr_1", "t_acme", "wfi_ok:4:v1", truth) is None
    assert "unknown" in book.execution_refusal("tr_1", "t_globex", "wfi_ok:4:v1", truth)
    book.executed("tr_1", "wfi_ok:4:v1")
    assert "already executed by instance wfi_ok" in book.execution_refusal("tr_1", "t_acme", "wfi_2:4:v1", truth)
