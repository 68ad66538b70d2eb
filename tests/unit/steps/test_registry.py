"""The step-type registry: one kind per StepType, each with its schema, and the schema and the validation
agreeing (every key one accepts the other accepts; the built-in templates and each schema's example pass
both)."""

from __future__ import annotations

import jsonschema
import pytest

from core.builtin import BUILTIN_NAMES, builtin_template
from core.steps import STEP_KINDS, TIMER_OWNERS, config_schemas, kind_of, timer_owner
from core.timers import OnTimeout, TimerPurpose, hours_to_ms, seconds_to_ms
from core.types import StepType
from core.validation import validate_template
from gateway.openapi import SCHEMAS

KINDS = list(STEP_KINDS.values())


def _one_step(step_type: StepType, config: dict) -> dict:
    return {"name": "T", "trigger_type": "manual", "steps": [{"type": step_type.value, "name": "s", "config": config}]}


def _unknown_key_problems(step_type: StepType, config: dict) -> set[str]:
    return {p.pointer.rsplit("/", 1)[-1] for p in validate_template(_one_step(step_type, config))
            if "config field" in p.message}


def test_every_step_type_has_exactly_one_kind_and_a_2020_12_schema():
    assert set(STEP_KINDS) == set(StepType)
    for kind in KINDS:
        jsonschema.Draft202012Validator.check_schema(kind.config_schema)
        assert kind.config_schema["properties"], kind.type
        assert all("description" in kind.config_schema["properties"][key] or "enum" in
                   kind.config_schema["properties"][key] or "type" in kind.config_schema["properties"][key]
                   for key in kind.config_keys)


def test_every_timer_purpose_but_the_engine_loops_has_one_owner_with_an_on_timer():
    """Retry is the step loop's, transition_due the state machine's (core/machine_run.py); the rest a step type's."""
    owned = {purpose for purpose in TimerPurpose if timer_owner(purpose) is not None}
    assert owned == set(TimerPurpose) - {TimerPurpose.RETRY, TimerPurpose.TRANSITION_DUE}
    assert all(kind.on_timer is not None for kind in TIMER_OWNERS.values())


def test_timer_purposes_keep_the_strings_recorded_logs_carry():
    assert [p.value for p in TimerPurpose] == ["retry", "approval_timeout", "review_timeout", "wait_until",
                                               "wait_poll", "wait_timeout", "callback_timeout", "payment_timeout",
                                               "transition_due"]
    assert TimerPurpose.WAIT_POLL == "wait_poll"


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_every_builtin_step_config_validates_against_its_type_schema(name):
    for step in builtin_template(name)["steps"]:
        jsonschema.validate(step.get("config") or {}, kind_of(step["type"]).config_schema)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.type.value)
def test_each_schema_example_is_accepted_by_the_schema_and_by_validation(kind):
    [example] = kind.config_schema["examples"]
    jsonschema.validate(example, kind.config_schema)
    assert validate_template(_one_step(kind.type, example)) == []


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.type.value)
def test_schema_and_validation_agree_on_the_config_keys(kind):
    [example] = kind.config_schema["examples"]
    schema = jsonschema.Draft202012Validator(kind.config_schema)
    for key in kind.config_keys:
        config = {**example, key: example.get(key, "x")}
        assert key not in _unknown_key_problems(kind.type, config), (kind.type, key)
        assert not [e for e in schema.iter_errors(config) if e.validator == "additionalProperties"], (kind.type, key)
    config = {**example, "no_such_key": 1}
    assert "no_such_key" in _unknown_key_problems(kind.type, config)
    assert [e for e in schema.iter_errors(config) if e.validator == "additionalProperties"]


def test_keys_of_all_builtin_templates_are_in_their_schemas():
    for name in BUILTIN_NAMES:
        for step in builtin_template(name)["steps"]:
            assert set(step.get("config") or {}) <= kind_of(step["type"]).config_keys, (name, step["name"])


def test_the_openapi_step_is_one_of_the_step_types_keyed_by_type():
    step = SCHEMAS["Step"]
    assert step["discriminator"]["propertyName"] == "type"
    assert set(step["discriminator"]["mapping"]) == {t.value for t in StepType}
    for step_type in StepType:
        variant = SCHEMAS[f"{step_type.value.capitalize()}Step"]
        assert variant["properties"]["type"]["const"] == step_type.value
        config = SCHEMAS[variant["properties"]["config"]["$ref"].rsplit("/", 1)[-1]]
        assert config is kind_of(step_type).config_schema


def test_the_step_types_listing_carries_each_schema():
    listing = config_schemas()
    assert set(listing) == {t.value for t in StepType}
    assert listing["wait"]["config_schema"] is kind_of("wait").config_schema
    assert listing["condition"]["handler"] is None and listing["external"]["handler"] == "external"


def test_durations_convert_to_milliseconds_in_one_place():
    assert hours_to_ms(1.5) == 5_400_000 and seconds_to_ms("2") == 2000 and hours_to_ms(None) == 0


def test_on_timeout_is_parsed_into_its_final_action():
    assert OnTimeout.parse(None).final_action == "fail"
    assert OnTimeout.parse("continue").final_action == "continue"
    escalate = OnTimeout.parse({"approvers": {"type": "role", "value": "cfo"}, "then": "auto_approve"})
    assert (escalate.action, escalate.final_action, escalate.max_escalations) == ("escalate", "auto_approve", 1)


def test_every_handler_kind_a_step_type_names_has_a_request_topic():
    from schemas.topics import STEP_KINDS as TOPIC_KINDS

    assert {kind.handler for kind in KINDS if kind.handler} == set(TOPIC_KINDS)
