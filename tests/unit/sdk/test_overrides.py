"""Template overrides (flowline/overrides.py): what each override changes, and every problem at once."""

from __future__ import annotations

import pytest

from core.builtin import builtin_template
from core.validation import validate_template
from flowline.overrides import OverrideError, apply_overrides


def test_roles_amounts_timeouts_and_quorum_change_only_what_they_name():
    source = builtin_template("procurement_approval")
    result = apply_overrides(source, {"name": "P2", "roles": {"cfo": "controller"},
                                      "amounts": {"Check Amount Tier": 5000}, "timeouts": {"3": 6},
                                      "quorum": {"CFO Approval": "DUAL"}})
    assert result["name"] == "P2"
    assert result["steps"][0]["config"]["expression"] == "trigger.amount <= 5000"
    assert result["steps"][1]["config"]["approvers"] == {"type": "role", "value": "controller"}
    assert result["steps"][1]["config"]["level"] == "DUAL"
    assert result["steps"][2]["config"]["timeout_hours"] == 6
    assert result["steps"][2]["config"]["approvers"]["value"] == "finance_manager"
    assert source == builtin_template("procurement_approval")  # the source is not touched
    assert validate_template(result) == []


def test_a_committee_quorum_and_a_url():
    source = builtin_template("compliance_review")
    external = next(s["name"] for s in source["steps"] if s["type"] == "external")
    committee = next(s["name"] for s in source["steps"] if s["type"] == "approval")
    result = apply_overrides(source, {"quorum": {committee: 3}, "urls": {external: "https://kyc.example/api"}})
    by_name = {s["name"]: s for s in result["steps"]}
    assert (by_name[committee]["config"]["level"], by_name[committee]["config"]["quorum"]) == ("COMMITTEE", 3)
    assert by_name[external]["config"]["url"] == "https://kyc.example/api"
    assert result["name"] == f"{source['name']} (custom)"


def test_a_role_in_a_list_and_in_an_escalation_is_renamed_everywhere():
    source = builtin_template("trade_approval")
    result = apply_overrides(source, {"roles": {"head_of_risk": "cro"}})
    assert "head_of_risk" not in str(result) and "cro" in str(result)


def test_an_amount_mapping_picks_one_of_several_numbers():
    doc = {"name": "T", "steps": [{"type": "condition", "name": "Band",
                                   "config": {"expression": "trigger.amount > 100 and trigger.amount < 1000"}}]}
    result = apply_overrides(doc, {"amounts": {"Band": {"1000": 2000}}})
    assert result["steps"][0]["config"]["expression"] == "trigger.amount > 100 and trigger.amount < 2000"
    with pytest.raises(OverrideError) as ambiguous:
        apply_overrides(doc, {"amounts": {"Band": 5}})
    assert ambiguous.value.errors[0][0] == "/amounts/Band" and "2 numbers" in ambiguous.value.errors[0][1]


def test_every_problem_is_reported_at_once_with_its_pointer():
    with pytest.raises(OverrideError) as bad:
        apply_overrides(builtin_template("procurement_approval"), {
            "roles": {"ceo": "x"}, "timeouts": {"Nope": 1, "Check Amount Tier": 2, "CFO Approval": -1},
            "quorum": {"Execute Payment": "DUAL", "CFO Approval": "MOST"}, "urls": {"CFO Approval": "https://x"},
            "colour": "blue"})
    pointers = [p for p, _ in bad.value.errors]
    assert pointers == ["/colour", "/roles/ceo", "/timeouts/Nope", "/timeouts/Check Amount Tier",
                        "/timeouts/CFO Approval", "/quorum/Execute Payment", "/quorum/CFO Approval",
                        "/urls/CFO Approval"]


def test_pointers_escape_slashes_in_step_names():
    with pytest.raises(OverrideError) as bad:
        apply_overrides({"name": "T", "steps": []}, {"timeouts": {"a/b": 1}})
    assert bad.value.errors[0][0] == "/timeouts/a~1b"
