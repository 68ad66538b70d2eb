"""Quorum arithmetic per approval level."""

from __future__ import annotations

import pytest

from core.quorum import APPROVED, PENDING, REJECTED, check_quorum, committee_members, parse_level, required_approvals
from core.types import ApprovalLevel as L

USERS = {"type": "user", "value": ["a", "b", "c", "d"]}


def test_parse_level_accepts_any_case_and_defaults_to_single():
    assert parse_level(None) is L.SINGLE
    assert parse_level("dual") is L.DUAL
    assert parse_level("COMMITTEE") is L.COMMITTEE
    assert parse_level("TRIPLE") is None
    assert parse_level(["DUAL"]) is None


@pytest.mark.parametrize(("level", "config", "required"), [
    (L.AUTO, {}, 0),
    (L.SINGLE, {}, 1),
    (L.DUAL, {}, 2),
    (L.COMMITTEE, {"quorum": 3, "approvers": USERS}, 3),
    (L.COMMITTEE, {"approvers": USERS}, 3),
    (L.COMMITTEE, {"approvers": {"type": "role", "value": "board"}}, 2),
])
def test_required_approvals(level, config, required):
    assert required_approvals(level, config) == required


def test_committee_members_counts_named_people_and_is_unknown_for_roles():
    assert committee_members(USERS) == 4
    assert committee_members([{"type": "user", "value": "a"}, {"type": "agent", "value": ["x", "y"]}]) == 3
    assert committee_members([USERS, {"type": "role", "value": "board"}]) == 0


@pytest.mark.parametrize(("level", "required", "members", "votes", "outcome"), [
    (L.SINGLE, 1, 0, [], PENDING),
    (L.SINGLE, 1, 0, ["approve"], APPROVED),
    (L.SINGLE, 1, 0, ["reject"], REJECTED),
    (L.DUAL, 2, 0, ["approve"], PENDING),
    (L.DUAL, 2, 0, ["approve", "approve"], APPROVED),
    (L.DUAL, 2, 0, ["approve", "reject"], REJECTED),
    (L.COMMITTEE, 3, 4, ["approve", "reject", "approve"], PENDING),
    (L.COMMITTEE, 3, 4, ["approve", "reject", "approve", "approve"], APPROVED),
    (L.COMMITTEE, 3, 4, ["reject", "reject"], REJECTED),
    (L.COMMITTEE, 2, 0, ["reject"], PENDING),
    (L.COMMITTEE, 2, 0, ["reject", "approve", "reject"], REJECTED),
    (L.AUTO, 0, 0, [], APPROVED),
])
def test_check_quorum(level, required, members, votes, outcome):
    assert check_quorum(level, required, members, votes) == outcome
