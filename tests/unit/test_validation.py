"""Template validation: every problem at once, each with its JSON pointer; visualize()."""

from __future__ import annotations

import copy

import pytest

from core.builtin import builtin_template
from core.validation import validate_template, visualize


def problems(doc, **kwargs) -> dict[str, str]:
    return {p.pointer: p.message for p in validate_template(doc, **kwargs)}


def base(*steps, **top) -> dict:
    return {"name": "T", "trigger_type": "manual", "steps": list(steps) or [NOTICE], **top}


NOTICE = {"type": "notification", "name": "N", "config": {"channel": "webhook", "url": "https://x.test"}}
APPROVAL = {"type": "approval", "name": "A", "config": {"approvers": {"type": "role", "value": "ops"}}}


def with_config(step: dict, **config) -> dict:
    step = copy.deepcopy(step)
    step["config"].update(config)
    return step


CASES = [
    ("not an object", [], "", "a template must be a JSON object"),
    ("unknown top-level field", base(colour="red"), "/colour", "unknown field 'colour'"),
    ("missing name", {"steps": [NOTICE]}, "/name", "name is required"),
    ("long name", base(name="x" * 201), "/name", "at most 200 characters"),
    ("bad trigger type", base(trigger_type="cron"), "/trigger_type", "trigger_type 'cron' is not one of"),
    ("trigger config not an object", base(trigger_type="event", trigger_config=[]), "/trigger_config",
     "must be an object"),
    ("conditions not a list", base(trigger_type="event", trigger_config={"conditions": {}}),
     "/trigger_config/conditions", "must be a list"),
    ("condition not an object", base(trigger_type="event", trigger_config={"conditions": ["x"]}),
     "/trigger_config/conditions/0", "must be an object"),
    ("condition without field", base(trigger_type="event", trigger_config={"conditions": [{"op": "eq", "value": 1}]}),
     "/trigger_config/conditions/0/field", "dotted path"),
    ("unknown op", base(trigger_type="event", trigger_config={"conditions": [{"field": "a", "op": "like"}]}),
     "/trigger_config/conditions/0/op", "op 'like' is not one of"),
    ("op without value", base(trigger_type="event", trigger_config={"conditions": [{"field": "a", "op": "eq"}]}),
     "/trigger_config/conditions/0/value", "needs a value"),
    ("in without a list", base(trigger_type="event",
                               trigger_config={"conditions": [{"field": "a", "op": "in", "value": 1}]}),
     "/trigger_config/conditions/0/value", "needs a list value"),
    ("schedule without cron", base(trigger_type="scheduled"), "/trigger_config/cron", "needs cron"),
    ("threshold without field", base(trigger_type="threshold", trigger_config={"op": "gte", "value": 1}),
     "/trigger_config", "needs field, op and value"),
    ("threshold value not a number", base(trigger_type="threshold",
                                          trigger_config={"field": "a", "op": "gte", "value": "x"}),
     "/trigger_config/value", "must be a number"),
    ("bad topic", base(trigger_type="event", trigger_config={"topic": "a topic"}), "/trigger_config/topic",
     "Kafka topic name"),
    ("no steps", base(steps=[]) | {"steps": []}, "/steps", "non-empty list"),
    ("too many steps", base() | {"steps": [NOTICE] * 101}, "/steps", "at most 100 steps"),
    ("step not an object", base("x"), "/steps/0", "must be an object"),
    ("unknown step field", base(NOTICE | {"colour": 1}), "/steps/0/colour", "unknown field 'colour'"),
    ("unknown step type", base({"type": "loop", "name": "L"}), "/steps/0/type", "unknown step type 'loop'"),
    ("step without name", base({"type": "notification", "config": NOTICE["config"]}), "/steps/0/name",
     "non-empty name"),
    ("duplicate name", base(NOTICE, NOTICE), "/steps/1/name", "already used by step 1"),
    ("duplicate key", base(NOTICE | {"id": "k"}, NOTICE | {"name": "M", "id": "k"}), "/steps/1/id",
     "step key 'k' is already used"),
    ("config not an object", base(NOTICE | {"config": []}), "/steps/0/config", "must be an object"),
    ("unknown config field", base(with_config(NOTICE, colour=1)), "/steps/0/config/colour",
     "unknown notification config field"),
    ("bad branch", base({"type": "condition", "name": "C", "config": {"expression": "true", "if_true": "jump"}},
                        NOTICE), "/steps/0/config/if_true", "'jump' is not"),
    ("branch outside", base({"type": "condition", "name": "C", "config": {"expression": "true",
                                                                          "if_true": "skip_to:9"}}, NOTICE),
     "/steps/0/config/if_true", "outside the steps"),
    ("branch to unknown name", base({"type": "condition", "name": "C",
                                     "config": {"expression": "true", "if_false": "skip_to:Nope"}}, NOTICE),
     "/steps/0/config/if_false", "names no step"),
    ("condition without expression", base({"type": "condition", "name": "C", "config": {}}, NOTICE),
     "/steps/0/config/expression", "needs an expression"),
    ("bad expression", base({"type": "condition", "name": "C", "config": {"expression": "trigger.a ="}}, NOTICE),
     "/steps/0/config/expression", "not a valid expression"),
    ("unsafe expression", base({"type": "condition", "name": "C", "config": {"expression": "open('x')"}}, NOTICE),
     "/steps/0/config/expression", "calls open()"),
    ("bad level", base(with_config(APPROVAL, level="TRIPLE")), "/steps/0/config/level", "'TRIPLE' is not one of"),
    ("approval without approvers", base({"type": "approval", "name": "A", "config": {}}), "/steps/0/config/approvers",
     "needs approvers"),
    ("approvers of a bad shape", base(with_config(APPROVAL, approvers="cfo")), "/steps/0/config/approvers",
     "approvers must be"),
    ("approver type", base(with_config(APPROVAL, approvers={"type": "group", "value": "x"})),
     "/steps/0/config/approvers/type", "approver type 'group'"),
    ("approver value", base(with_config(APPROVAL, approvers={"type": "role", "value": ""})),
     "/steps/0/config/approvers/value", "non-empty"),
    ("listed approver value", base(with_config(APPROVAL, approvers=[{"type": "role", "value": "a"},
                                                                     {"type": "user", "value": [1]}])),
     "/steps/0/config/approvers/1/value", "non-empty"),
    ("bad quorum", base(with_config(APPROVAL, level="COMMITTEE", quorum=0)), "/steps/0/config/quorum",
     "at least 1"),
    ("quorum above members", base(with_config(APPROVAL, level="COMMITTEE", quorum=3,
                                              approvers={"type": "user", "value": ["a", "b"]})),
     "/steps/0/config/quorum", "more than the 2 committee members"),
    ("dual with one person", base(with_config(APPROVAL, level="DUAL", approvers={"type": "user", "value": "a"})),
     "/steps/0/config/approvers", "at least two"),
    ("timeout not positive", base(with_config(APPROVAL, timeout_hours=0)), "/steps/0/config/timeout_hours",
     "positive number"),
    ("timeout too long", base(with_config(APPROVAL, timeout_hours=10 ** 6)), "/steps/0/config/timeout_hours",
     "at most"),
    ("bad on_timeout", base(with_config(APPROVAL, on_timeout="shrug", timeout_hours=1)), "/steps/0/config/on_timeout",
     "'shrug' is not one of"),
    ("on_timeout without timeout", base(with_config(APPROVAL, on_timeout="fail")), "/steps/0/config/on_timeout",
     "needs timeout_hours"),
    ("escalation then", base(with_config(APPROVAL, timeout_hours=1, on_timeout={"action": "escalate",
                                                                                "then": "panic"})),
     "/steps/0/config/on_timeout/then", "then 'panic'"),
    ("escalation approvers", base(with_config(APPROVAL, timeout_hours=1, on_timeout={"approvers": "x"})),
     "/steps/0/config/on_timeout/approvers", "approvers must be"),
    ("escalate_to", base(with_config(APPROVAL, escalate_to=[])), "/steps/0/config/escalate_to", "approvers must be"),
    ("unknown action", base({"type": "action", "name": "P", "config": {"action": "launch"}}), "/steps/0/config/action",
     "unknown action 'launch'"),
    ("params not an object", base({"type": "action", "name": "P", "config": {"action": "execute_transfer",
                                                                           "params": []}}),
     "/steps/0/config/params", "must be an object"),
    ("retry config shape", base(with_config(NOTICE, retry_config=3)), "/steps/0/config/retry_config",
     "must be {max_retries"),
    ("max retries", base(with_config(NOTICE, retry_config={"max_retries": 50})),
     "/steps/0/config/retry_config/max_retries", "0 to 20"),
    ("backoff", base(with_config(NOTICE, retry_config={"backoff_ms": 0})), "/steps/0/config/retry_config/backoff_ms",
     "milliseconds"),
    ("unknown retry field", base(with_config(NOTICE, retry_config={"jitter": 1})),
     "/steps/0/config/retry_config/jitter", "unknown retry_config field"),
    ("on_failure", base(with_config(NOTICE, on_failure="cry")), "/steps/0/config/on_failure", "'cry' is not one of"),
    ("review approvers", base(with_config(NOTICE, on_failure="human_review", review_approvers=5)),
     "/steps/0/config/review_approvers", "approvers must be"),
    ("failure notification shape", base(with_config(NOTICE, failure_notification="x")),
     "/steps/0/config/failure_notification", "must be an object"),
    ("failure webhook without url", base(with_config(NOTICE, failure_notification={"type": "webhook"})),
     "/steps/0/config/failure_notification/url", "needs a url"),
    ("failure email without to", base(with_config(NOTICE, failure_notification={"type": "email"})),
     "/steps/0/config/failure_notification/to", "needs to"),
    ("handler timeout", base(with_config(NOTICE, timeout_seconds=301)), "/steps/0/config/timeout_seconds", "at most"),
    ("wait without a mode", base({"type": "wait", "name": "W", "config": {}}, NOTICE), "/steps/0/config",
     "exactly one of"),
    ("wait with two modes", base({"type": "wait", "name": "W", "config": {"until": 1, "duration_hours": 1}}, NOTICE),
     "/steps/0/config", "got until, duration_hours"),
    ("wait until not a time", base({"type": "wait", "name": "W", "config": {"until": "tomorrow"}}, NOTICE),
     "/steps/0/config/until", "ISO 8601"),
    ("wait duration", base({"type": "wait", "name": "W", "config": {"duration_seconds": -1}}, NOTICE),
     "/steps/0/config/duration_seconds", "positive"),
    ("wait condition", base({"type": "wait", "name": "W", "config": {"condition": "x.y"}}, NOTICE),
     "/steps/0/config/condition", "refers to 'x'"),
    ("wait poll", base({"type": "wait", "name": "W", "config": {"condition": "true", "poll_interval_seconds": 0}},
                       NOTICE), "/steps/0/config/poll_interval_seconds", "positive"),
    ("wait on_timeout", base({"type": "wait", "name": "W", "config": {"duration_hours": 1, "on_timeout": "escalate"}},
                             NOTICE), "/steps/0/config/on_timeout", "fail or continue"),
    ("channel", base({"type": "notification", "name": "N", "config": {"channel": "sms"}}), "/steps/0/config/channel",
     "'sms' is not webhook or email"),
    ("webhook url", base({"type": "notification", "name": "N", "config": {"url": "ftp://x"}}), "/steps/0/config/url",
     "http(s) url"),
    ("email to", base({"type": "notification", "name": "N", "config": {"channel": "email"}}), "/steps/0/config/to",
     "needs to"),
    ("external url", base({"type": "external", "name": "E", "config": {}}), "/steps/0/config/url", "http(s) url"),
    ("external method", base({"type": "external", "name": "E", "config": {"url": "https://x", "method": "FETCH"}}),
     "/steps/0/config/method", "'FETCH' is not one of"),
    ("external mode", base({"type": "external", "name": "E", "config": {"url": "https://x", "mode": "later"}}),
     "/steps/0/config/mode", "'later' is not sync or async"),
    ("external headers", base({"type": "external", "name": "E", "config": {"url": "https://x", "headers": []}}),
     "/steps/0/config/headers", "object of strings"),
    ("success condition", base({"type": "external", "name": "E", "config": {"url": "https://x",
                                                                           "success_condition": "response."}}),
     "/steps/0/config/success_condition", "not a valid expression"),
    ("extract fields shape", base({"type": "external", "name": "E", "config": {"url": "https://x",
                                                                              "extract_fields": []}}),
     "/steps/0/config/extract_fields", "must map output names"),
    ("extract field name", base({"type": "external", "name": "E",
                                 "config": {"url": "https://x", "extract_fields": {"a-b": "response.x"}}}),
     "/steps/0/config/extract_fields/a-b", "letters, digits and _"),
    ("completion timeout", base({"type": "external", "name": "E",
                                 "config": {"url": "https://x", "completion_timeout_hours": 24 * 91}}),
     "/steps/0/config/completion_timeout_hours", "at most"),
    ("placeholder path", base(with_config(NOTICE, url="https://x/{{trigger..id}}")), "/steps/0/config/url",
     "not a dotted path"),
    ("placeholder root", base(with_config(NOTICE, url="https://x/{{env.HOME}}")), "/steps/0/config/url",
     "starts with 'env'"),
    ("unknown secret", base(with_config(NOTICE, headers={"A": "{{secrets.nope}}"})), "/steps/0/config/headers/A",
     "secret 'nope' is not configured"),
    ("placeholder of no step", base(with_config(NOTICE, body={"x": "{{steps.ghost.x}}"})),
     "/steps/0/config/body/x", "names no step"),
    ("placeholder of a later step", base(with_config(NOTICE, body={"x": "{{steps.m.x}}"}), NOTICE | {"name": "M"}),
     "/steps/0/config/body/x", "has not run before step 1"),
    ("unreachable step", base({"type": "condition", "name": "C", "config": {"expression": "true",
                                                                            "if_true": "complete",
                                                                            "if_false": "complete"}}, NOTICE),
     "/steps/1", "can never be reached"),
    ("cycle without exit", base(NOTICE, {"type": "condition", "name": "C",
                                         "config": {"expression": "true", "if_true": "skip_to:1",
                                                    "if_false": "skip_to:1"}}),
     "/steps/0", "cycle with no exit"),
]


@pytest.mark.parametrize(("doc", "pointer", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_problem_is_reported_at_its_json_pointer(doc, pointer, message):
    found = problems(doc, known_secrets=["erp_api_key"])
    assert pointer in found, found
    assert message in found[pointer]


def test_all_problems_are_returned_at_once():
    doc = {"name": "", "trigger_type": "cron", "colour": 1,
           "steps": [{"type": "approval", "name": "A", "config": {"level": "TRIPLE"}},
                     {"type": "external", "name": "E", "config": {"method": "FETCH"}}]}
    assert set(problems(doc)) >= {"/name", "/trigger_type", "/colour", "/steps/0/config/level",
                                  "/steps/0/config/approvers", "/steps/1/config/url", "/steps/1/config/method"}


def test_a_loop_with_an_exit_is_valid():
    doc = base(APPROVAL, {"type": "condition", "name": "C",
                          "config": {"expression": "steps.a.approved_by", "if_true": "continue",
                                     "if_false": "skip_to:1"}}, NOTICE)
    assert validate_template(doc) == []


def test_secrets_are_not_checked_until_configured():
    assert validate_template(base(with_config(NOTICE, headers={"A": "{{secrets.any}}"}))) == []


def test_problems_serialize_as_pointer_and_message():
    [problem] = validate_template(base(with_config(NOTICE, url="ftp://x")))
    assert problem.as_dict() == {"pointer": "/steps/0/config/url",
                                 "message": "a webhook notification needs an http(s) url"}


def test_a_deeply_nested_expression_is_a_problem_not_a_crash():
    found = problems(base({"type": "condition", "name": "C", "config": {"expression": "-" * 1500 + "1"}}, NOTICE))
    assert "nested more than 50 levels" in found["/steps/0/config/expression"]


def test_visualize_gives_the_adjacency_and_a_mermaid_flowchart():
    view = visualize(builtin_template("procurement_approval"))
    assert view["adjacency"] == {"1": [2, 3], "2": ["end", 3], "3": ["end", 4], "4": ["end"]}
    mermaid = view["mermaid"].splitlines()
    assert mermaid[0] == "flowchart TD"
    assert '  s1{"Check Amount Tier"}' in mermaid
    assert "  s1 -- true --> s3" in mermaid
    assert "  s1 -- false --> s2" in mermaid
    assert "  s2 -. rejected .-> failed((failed))" in mermaid
    assert "  s4 --> done((done))" in mermaid


def test_a_step_key_that_is_a_reserved_word_is_refused_with_its_pointer():
    from core.validation import validate_template

    doc = {"name": "x", "steps": [{"type": "condition", "name": "Try", "config": {"expression": "true"}},
                                  {"type": "condition", "name": "2nd check", "config": {"expression": "true"}}]}
    problems = validate_template(doc)
    assert [(p.pointer, "reserved word" in p.message) for p in problems] == [("/steps/0/id", True)]
