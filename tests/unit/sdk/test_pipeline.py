"""Pipelines as templates, and PipelineResult from an instance (flowline/prd.py, no I/O)."""

from __future__ import annotations

import pytest

from core.validation import validate_template
from flowline.client.models import InstanceDetail
from flowline.prd import PipelineStep, pipeline_result, pipeline_template


def call(name: str, **config) -> PipelineStep:
    return PipelineStep(name, {"type": "external", "config": {"url": "https://erp.example/x", **config}})


def test_a_pipeline_is_a_manual_template_and_a_condition_guards_its_step():
    doc = pipeline_template("P", [
        call("A"),
        PipelineStep("B", {"type": "external", "config": {"url": "https://erp.example/b"}}, condition="steps.a.x > 1",
                     on_failure="skip", timeout=5),
        call("C"),
        PipelineStep("D", {"type": "wait", "config": {"duration_hours": 1}}, condition="trigger.slow"),
    ])
    assert doc["trigger_type"] == "manual"
    assert [s["name"] for s in doc["steps"]] == ["A", "B: condition", "B", "C", "D: condition", "D"]
    assert doc["steps"][1]["config"] == {"expression": "steps.a.x > 1", "if_true": "continue", "if_false": "skip_to:4"}
    assert doc["steps"][2]["config"]["on_failure"] == "skip" and doc["steps"][2]["config"]["timeout_seconds"] == 5
    assert doc["steps"][4]["config"]["if_false"] == "complete"
    assert validate_template(doc) == []


def test_approvals_are_not_pipeline_steps():
    with pytest.raises(ValueError, match="approval"):
        pipeline_template("P", [PipelineStep("OK?", {"type": "approval", "config": {}})])
    with pytest.raises(ValueError):
        pipeline_template("P", [])


def detail(status: str, steps: list[dict], timeline: list[dict], completed_at: str | None) -> InstanceDetail:
    return InstanceDetail.from_json({
        "id": "wfi_1", "template_id": "wft_p", "status": status, "created_at": "2026-11-30T01:00:00+00:00",
        "updated_at": "2026-11-30T01:00:05+00:00", "completed_at": completed_at, "current_step": None,
        "initiated_by": {"id": "u", "kind": "human"}, "blocking": {}, "steps": steps, "timeline": timeline})


def test_the_result_counts_latest_attempts_and_keeps_every_failure():
    steps = [
        {"step": 1, "attempt": 1, "name": "A", "type": "external", "status": "COMPLETED", "output": {"x": 2}},
        {"step": 2, "attempt": 1, "name": "B: condition", "type": "condition", "status": "COMPLETED", "output": True},
        {"step": 3, "attempt": 1, "name": "B", "type": "external", "status": "FAILED", "error": "HTTP status 500"},
        {"step": 3, "attempt": 2, "name": "B", "type": "external", "status": "COMPLETED", "output": {"ok": True}},
    ]
    result = pipeline_result(detail("COMPLETED", steps, [], "2026-11-30T01:00:09.5+00:00"))
    assert result.steps_completed == ["A", "B"] and result.steps_failed == []
    assert result.outputs == {"A": {"x": 2}, "B": {"ok": True}}
    assert result.failures == [{"step": "B", "number": 3, "attempt": 1, "error": "HTTP status 500"}]
    assert result.duration == 9.5 and (result.pipeline_id, result.run_id) == ("wft_p", "wfi_1")


def test_a_failed_run_names_the_failed_step_and_its_duration_so_far():
    steps = [{"step": 1, "attempt": 1, "name": "A", "type": "external", "status": "FAILED", "error": "timeout"}]
    timeline = [{"seq": 3, "event_type": "StepFailed", "step": 1, "details": {"attempt": 1, "error": "timeout"},
                 "actor": {"id": "flowline", "kind": "system"}}]
    result = pipeline_result(detail("FAILED", steps, timeline, None))
    assert result.steps_failed == ["A"] and result.steps_completed == []
    assert result.failures == [{"step": "A", "number": 1, "attempt": 1, "error": "timeout"}]
    assert result.duration == 5.0
