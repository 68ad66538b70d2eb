"""Flowline's answers in words for a model: a template's steps, who blocks an instance, why a call was refused.

Pure functions over the JSON the gateway returns (no I/O), so the wording is tested without a server and
the MCP tools, resources and prompts all say the same thing. The numbers and names come from the gateway's
documents; nothing here re-decides a rule (who may approve, whether a limit holds): that stays in the core,
and the text only reports what the gateway or the engine said.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from core.approvers import describe as describe_approvers

UNTRUSTED_OPEN, UNTRUSTED_CLOSE = "<untrusted-text>", "</untrusted-text>"


def untrusted(text: Any) -> str:
    """Text a person or another agent wrote (reasons, payloads), delimited so a model reads it as data, not as
    instructions to follow."""
    body = str(text or "").replace(UNTRUSTED_CLOSE, "</ untrusted-text>")
    return f"{UNTRUSTED_OPEN}{body}{UNTRUSTED_CLOSE}"


def _hours(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{number:g} h"


def duration(seconds: float) -> str:
    """`3 h 12 min`, `45 s`: how long something has waited, for a person."""
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else "", f"{minutes} min" if minutes else ""]
    text = " ".join(p for p in parts if p)
    return text or f"{secs} s"


def _timeout_words(config: Mapping[str, Any]) -> str:
    hours = config.get("timeout_hours")
    if hours is None:
        return "no timeout"
    on_timeout = config.get("on_timeout", "fail")
    if isinstance(on_timeout, Mapping):
        action = on_timeout.get("action", "escalate")
        text = f"{_hours(hours)} timeout then {action}"
        if action == "escalate":
            target = on_timeout.get("approvers") or config.get("escalate_to")
            if target:
                text += f" to {describe_approvers(target)}"
            if on_timeout.get("timeout_hours") is not None:
                text += f" (who get {_hours(on_timeout['timeout_hours'])}, then {on_timeout.get('then', 'fail')})"
        return text
    text = f"{_hours(hours)} timeout then {on_timeout}"
    if on_timeout == "escalate" and config.get("escalate_to"):
        text += f" to {describe_approvers(config['escalate_to'])}"
    return text


def describe_step(number: int, step: Mapping[str, Any]) -> str:
    """One template step in a sentence, e.g. `step 2 "CFO Approval": approval by role cfo, SINGLE, 48 h timeout
    then fail`."""
    kind = str(step.get("type", "?"))
    config: Mapping[str, Any] = step.get("config") or {}
    head = f'step {number} "{step.get("name", "")}": '
    if kind == "approval":
        level = str(config.get("level") or "SINGLE").upper()
        if level == "AUTO":
            return head + "approval, AUTO (approves itself; nobody has to act)"
        text = f"approval by {describe_approvers(config.get('approvers'))}, {level}"
        if level == "COMMITTEE" and config.get("quorum") is not None:
            text += f" quorum {config['quorum']}"
        elif level == "DUAL":
            text += " quorum (2 different approvers)"
        return head + f"{text}, {_timeout_words(config)}"
    if kind == "condition":
        return head + (f"condition `{config.get('expression', '')}`: if true {config.get('if_true', 'continue')}, "
                       f"if false {config.get('if_false', 'continue')}")
    if kind == "action":
        return head + f"action {config.get('action', '?')} (runs by itself; retried on failure)"
    if kind == "wait":
        what = next((f"{k.removeprefix('duration_')} {config[k]}" for k in
                     ("duration_seconds", "duration_minutes", "duration_hours") if k in config), None)
        if what is None:
            what = f"until {config['until']}" if "until" in config else f"until `{config.get('condition', '')}`"
        return head + f"wait {what}"
    if kind == "notification":
        channel = config.get("channel") or config.get("type") or "webhook"
        return head + f"notification by {channel} (sent by itself)"
    if kind == "external":
        mode = config.get("mode", "sync")
        text = f"external call {config.get('method', 'POST')} {config.get('url', '?')}"
        if mode == "async":
            text += (", then waits for the external system's signed callback"
                     f" (up to {_hours(config.get('completion_timeout_hours', '?'))})")
        return head + text
    return head + kind


def describe_template(template: Mapping[str, Any]) -> str:
    """A template's name, trigger and every step in words."""
    document: Mapping[str, Any] = template.get("document") or {}
    steps: Sequence[Mapping[str, Any]] = document.get("steps") or []
    lines = [f"{template.get('name') or document.get('name', '')} ({template.get('id', '')}, version "
             f"{template.get('version', '?')}, {template.get('status', '?')}): "
             f"{template.get('description') or document.get('description', '')}".rstrip(": "),
             f"trigger: {document.get('trigger_type', template.get('trigger_type', 'manual'))}"
             + (" (start it with flowline_start_workflow)" if template.get("status") == "ACTIVE" else "")]
    lines += [describe_step(i, step) for i, step in enumerate(steps, start=1)]
    return "\n".join(lines)


def _parse_time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def waiting_since(instance: Mapping[str, Any]) -> datetime | None:
    """When the current step started (its latest attempt), from the instance's `steps`."""
    current = instance.get("current_step")
    attempts = [s for s in instance.get("steps") or [] if s.get("step") == current]
    if not attempts:
        return None
    return _parse_time(max(attempts, key=lambda s: s.get("attempt") or 0).get("started_at"))


def describe_blocking(instance: Mapping[str, Any], now: datetime | None = None) -> str:
    """Who or what the instance waits for and for how long, from the read model's `blocking`."""
    status = instance.get("status", "?")
    blocking: Mapping[str, Any] = instance.get("blocking") or {}
    if status in ("COMPLETED", "CANCELLED", "FAILED"):
        reason = blocking.get("reason") or instance.get("failure_reason")
        return f"instance is {status}" + (f": {reason}" if reason else "") + "; nothing blocks it."
    if status == "PAUSED":
        return "instance is PAUSED: an operator must resume it; an agent cannot."
    waiting_for = blocking.get("waiting_for")
    step = blocking.get("step", instance.get("current_step"))
    name = blocking.get("step_name") or instance.get("current_step_name") or ""
    if not waiting_for:
        return f"instance is {status} at step {step} ({name}); it is moving on by itself (nothing to wait for)."
    text = f"step {step} ({name}) waits for {waiting_for}"
    if waiting_for in ("approval", "review"):
        remaining = blocking.get("remaining")
        text += (f": {remaining if remaining is not None else '?'} more approval(s) needed from "
                 f"{describe_approvers(blocking.get('approvers'))}")
        if blocking.get("decided_by"):
            text += f" (already decided: {', '.join(blocking['decided_by'])})"
    elif waiting_for == "callback":
        text += ": the external system's signed callback (flowline_complete_external_step)"
    since = waiting_since(instance)
    if since is not None:
        text += f"; waiting for {duration(((now or datetime.now(UTC)) - since).total_seconds())}"
        text += f" (since {since.isoformat()})"
    timer = blocking.get("next_timer")
    if isinstance(timer, Mapping) and timer.get("fire_at"):
        text += f"; next timer: {timer.get('purpose', '')} at {timer['fire_at']}"
    return text + "."


def problem_text(status: int, problem: Mapping[str, Any], *, operation: str = "") -> str:
    """A gateway problem document (RFC 7807) as a tool error: title, detail, pointers and the next step."""
    title = str(problem.get("title") or "Error")
    if status >= 500:
        error_id = problem.get("error_id")
        return (f"{status} {title}: the Flowline gateway failed" + (f" (error id {error_id})" if error_id else "")
                + ". Not your mistake; try again later or report the error id to an operator.")
    lines = [f"{status} {title}" + (f" ({operation})" if operation else "") + f": {problem.get('detail', '')}"]
    if problem.get("pointer"):
        lines.append(f"pointer: {problem['pointer']}")
    for error in problem.get("errors") or []:
        if isinstance(error, Mapping):
            lines.append(f"- {error.get('pointer', '')}: {error.get('message', '')}")
    lines.append("next step: " + NEXT_STEP.get(status, "read the detail above and correct the call."))
    return "\n".join(lines)


NEXT_STEP = {
    400: "the request was malformed; check the arguments against the tool's input schema.",
    403: "you are not allowed to do this; do not retry. Tell the user that a human with the right role must act.",
    404: "check the id (flowline_list_templates, flowline_list_my_pending_approvals); the thing does not exist in "
         "your tenant.",
    409: "the engine refused it in the instance's current state; call flowline_get_instance and "
         "flowline_list_available_actions to see what is possible now; do not repeat the same call.",
    413: "send less data.",
    422: "fix the argument named by the pointer and call again.",
    503: "the gateway is busy or starting; wait a few seconds and retry once.",
}


def explain_refusals(instance: Mapping[str, Any], limit: int = 3) -> list[str]:
    """The engine's refusals in the instance's audit trail (CommandRejected), newest first, in words."""
    refusals = [t for t in instance.get("timeline") or [] if t.get("event_type") == "CommandRejected"]
    out = []
    for entry in reversed(refusals[-limit:]):
        details: Mapping[str, Any] = entry.get("details") or {}
        actor: Mapping[str, Any] = entry.get("actor") or {}
        command = details.get("command_type") or "a command"
        step = f" on step {entry['step']}" if entry.get("step") else ""
        # the engine records its refusals as the system; only a named human or agent says who tried
        who = f" by {actor.get('kind', '')} {actor['id']}" if actor.get("id") and actor.get("kind") != "system" else ""
        reason = entry.get("reasoning") or details.get("reason") or "no reason recorded"
        out.append(f"{entry.get('at') or ''} {command}{step}{who} was refused: {reason}".strip())
    return out
