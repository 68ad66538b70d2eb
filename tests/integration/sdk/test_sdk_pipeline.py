"""PRD component 4 through the SDK: a pipeline of three external calls to a local receiver whose middle
call fails, is retried with `retry_step`, and completes; its PipelineResult before and after."""

from __future__ import annotations

import uuid

import pytest

from flowline.prd import PipelineRunner, PipelineStep
from tests.integration.sdk.conftest import ADMIN, OPERATOR

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_a_pipeline_whose_middle_step_fails_is_retried_and_completes(sdk):
    run = uuid.uuid4().hex[:8]
    base = sdk.receiver.url
    sdk.receiver.on(f"/{run}/rates", 200, {"rate": 1.1})
    sdk.receiver.sequence(f"/{run}/ledger", (500, {"error": "ledger down"}), (200, {"entry": "L-7"}))
    sdk.receiver.on(f"/{run}/notify", 200, {"ok": True})
    no_retries = {"max_retries": 0}
    async with sdk.client(ADMIN) as admin:
        runner = PipelineRunner(admin, timeout=30)
        pipeline_id = await runner.create_pipeline(f"Settlement {run}", [
            PipelineStep("Fetch rates", {"type": "external", "config": {
                "url": f"{base}/{run}/rates", "extract_fields": {"rate": "response.body.rate"},
                "retry_config": no_retries}}, timeout=5),
            PipelineStep("Post ledger", {"type": "external", "config": {
                "url": f"{base}/{run}/ledger", "method": "POST", "body": {"rate": "{{steps.fetch_rates.rate}}"},
                "extract_fields": {"entry": "response.body.entry"}, "retry_config": no_retries}},
                on_failure="fail_workflow"),
            PipelineStep("Notify", {"type": "external", "config": {"url": f"{base}/{run}/notify",
                                                                    "retry_config": no_retries}},
                         condition="steps.fetch_rates.rate > 1"),
        ])
        await sdk.world.engine_knows(pipeline_id)

        failed = await runner.execute(pipeline_id, {"batch": run})
        assert failed.status == "FAILED" and failed.pipeline_id == pipeline_id
        assert failed.steps_completed == ["Fetch rates"]
        assert failed.steps_failed == ["Post ledger"]
        assert failed.outputs["Fetch rates"]["rate"] == 1.1
        assert [(f["step"], f["attempt"]) for f in failed.failures] == [("Post ledger", 1)]
        status = await runner.get_status(failed.run_id)
        assert status["status"] == "FAILED" and "500" in status["failure_reason"]

        done = await PipelineRunner(admin.with_token(OPERATOR), timeout=30).retry_step(failed.run_id, "Post ledger")

    assert done.status == "COMPLETED" and done.run_id == failed.run_id
    assert done.steps_completed == ["Fetch rates", "Post ledger", "Notify"]
    assert done.steps_failed == []
    assert done.outputs["Post ledger"]["entry"] == "L-7"
    assert [(f["step"], f["attempt"]) for f in done.failures] == [("Post ledger", 1)]
    assert done.duration is not None and done.duration >= 0
    ledger_calls = sdk.receiver.calls(f"/{run}/ledger")
    assert len(ledger_calls) == 2 and b"1.1" in ledger_calls[1].body
    assert len(sdk.receiver.calls(f"/{run}/notify")) == 1
