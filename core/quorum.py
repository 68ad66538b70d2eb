"""Approval quorum: how many distinct approvals a level needs, and when the votes settle the step.

SINGLE needs one approval; DUAL two from distinct approvers; COMMITTEE `quorum` of the committee (n of
m, where m is the number of named members when the approvers are listed, else unknown); AUTO needs none.
SINGLE and DUAL are rejected by any rejection. A committee is rejected once the approvals still possible
can no longer reach the quorum; with an unknown m, once rejections reach the quorum themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from core.types import ApprovalLevel

APPROVED = "approved"
REJECTED = "rejected"
PENDING = "pending"


_LEVELS: dict[Any, ApprovalLevel] = {None: ApprovalLevel.SINGLE, **{level.value: level for level in ApprovalLevel}}


def parse_level(raw: Any) -> ApprovalLevel | None:
    if isinstance(raw, str | None) and raw in _LEVELS:
        return _LEVELS[raw]
    try:
        return ApprovalLevel(str(raw).upper())
    except ValueError:
        return None


def committee_members(approvers: Any) -> int:
    """How many named people a committee has (0 when defined by role, so unknown)."""
    specs = approvers if isinstance(approvers, list) else [approvers]
    count = 0
    for spec in specs:
        if not isinstance(spec, dict):
            continue
        if spec.get("type") in ("user", "agent"):
            values = spec.get("value")
            count += len(values) if isinstance(values, list) else 1
        else:
            return 0
    return count


def required_approvals(level: ApprovalLevel, config: Mapping[str, Any]) -> int:
    if level is ApprovalLevel.AUTO:
        return 0
    if level is ApprovalLevel.SINGLE:
        return 1
    if level is ApprovalLevel.DUAL:
        return 2
    quorum = config.get("quorum")
    if isinstance(quorum, int) and quorum > 0:
        return quorum
    members = committee_members(config.get("approvers"))
    return members // 2 + 1 if members else 2


def check_quorum(level: ApprovalLevel, required: int, members: int, decisions: Iterable[str]) -> str:
    """`decisions` are "approve"/"reject" votes from distinct approvers."""
    votes = list(decisions)
    approvals = votes.count("approve")
    rejections = votes.count("reject")
    if approvals >= required:
        return APPROVED
    if level in (ApprovalLevel.SINGLE, ApprovalLevel.DUAL) and rejections:
        return REJECTED
    if level is ApprovalLevel.COMMITTEE:
        if members and members - rejections < required:
            return REJECTED
        if not members and rejections >= required:
            return REJECTED
    return PENDING
