"""The user commands of `flowline`: templates, instances, approvals, events and test transfers.

    flowline templates list | show ID | apply -f FILE | validate -f FILE | diff A B
    flowline instances list | show ID | approve ID STEP | reject ID STEP | cancel ID | retry ID STEP
    flowline instances transitions ID [--to STATE -r REASON]
    flowline pending
    flowline events tail [--instance ID] [--from-beginning] [--until EVENT] [--count N]
    flowline send transfer --amount 2500 --tenant acme [--type procurement]

Tables for people by default, `--json` for scripts (the API's own JSON; `events tail` writes one JSON
object per line). The server and token come from `--url`/`--token` or `FLOWLINE_URL`/`FLOWLINE_TOKEN`;
Kafka from `--bootstrap`/`--topic-prefix` or `FLOWLINE_KAFKA_BOOTSTRAP`/`FLOWLINE_TOPIC_PREFIX`.
Exit codes: 0 done, 1 the server refused (the problem is printed), 2 usage, 3 `templates diff` found
differences. `deploy/cli.py` (the stack commands) hands these command names to `main` here.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import difflib
import enum
import json
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from flowline.client import ApiError, Client, CommandAccepted, FlowlineError, TransportError
from schemas.settings import env

COMMANDS = ("templates", "instances", "pending", "events", "send")


# ------------------------------------------------------------------------------------------------ output

def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if hasattr(value, "isoformat"):
        return value.isoformat(timespec="seconds")
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))[:60]
    return str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def emit_json(value: Any, out=None) -> None:
    print(json.dumps(value, indent=2, default=_json_default), file=out or sys.stdout)


# ------------------------------------------------------------------------------------------------ helpers

def _client(args: argparse.Namespace, token: str | None = None) -> Client:
    return Client(args.url, token or args.token, timeout=args.timeout)


def _load(path: str) -> dict[str, Any]:
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    if path.endswith((".yaml", ".yml")):
        import yaml

        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise FlowlineError(f"{path}: a template document is a JSON (or YAML) object")
    return data


def _find_by_name(client: Client, name: str):
    return next((t for t in client.iter_templates() if t.name == name), None)


def _result_json(result: Any) -> Any:
    return result.raw


def _print_instance(detail, args: argparse.Namespace) -> None:
    if args.json:
        emit_json(detail.raw)
        return
    blocking = detail.blocking or {}
    print(f"{detail.id}  {detail.template_name} ({detail.template_id} v{detail.template_version})")
    step = f"{detail.current_step} {detail.current_step_name or ''}".strip() if detail.current_step else "-"
    print(f"status {detail.status}; step {step}; waiting for {blocking.get('waiting_for') or '-'}")
    if detail.failure_reason:
        print(f"failure: {detail.failure_reason}")
    if detail.steps:
        print()
        print(table([(s.step, s.attempt, s.name, s.type, s.status, ", ".join(s.approved_by) or None,
                      s.error or None) for s in detail.steps],
                    ["step", "attempt", "name", "type", "status", "approved by", "error"]))
    if detail.timeline:
        print()
        print(table([(t.seq, t.at, t.event_type, t.step, f"{t.actor.id} ({t.actor.kind})", t.reasoning or None)
                     for t in detail.timeline], ["seq", "at", "event", "step", "actor", "reasoning"]))


def _print_command(result: Any, args: argparse.Namespace, verb: str) -> None:
    if args.json:
        emit_json(_result_json(result))
    elif isinstance(result, CommandAccepted):
        print(f"{verb}: command {result.command_id} accepted for {result.instance_id} (not yet visible)")
    else:
        print(f"{verb}: {result.id} is {result.status}, at step {result.current_step or '-'} "
              f"{result.current_step_name or ''}".rstrip())


# ------------------------------------------------------------------------------------------------ templates

def templates_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        items = list(client.iter_templates(args.status))
    if args.json:
        emit_json([t.raw for t in items])
    else:
        print(table([(t.id, t.name, t.version, t.status, t.trigger_type, t.updated_at) for t in items],
                    ["id", "name", "version", "status", "trigger", "updated"]))
    return 0


def templates_show(args: argparse.Namespace) -> int:
    with _client(args) as client:
        template = client.get_template(args.id, args.version)
    if args.json:
        emit_json(template.raw)
    else:
        print(f"{template.id}  {template.name}  v{template.version} (versions {template.versions})  "
              f"{template.status}  trigger {template.trigger_type}")
        steps = template.document.get("steps") or []
        print(table([(n, s.get("type"), s.get("name"), s.get("config")) for n, s in enumerate(steps, 1)],
                    ["step", "type", "name", "config"]))
    return 0


def templates_apply(args: argparse.Namespace) -> int:
    """Create the template, or publish a new version of the one with this id (`--id`) or name."""
    document = _load(args.file)
    with _client(args) as client:
        existing = client.get_template(args.id) if args.id else _find_by_name(client, str(document.get("name")))
        if existing is None:
            template, action = client.create_template(document), "created"
        elif existing.document == document:
            template, action = existing, "unchanged"
        else:
            template, action = client.update_template(existing.id, document), "updated"
    if args.json:
        emit_json({"action": action, "template": template.raw})
    else:
        print(f"{action}: {template.id} v{template.version} ({template.name})")
    return 0


def templates_validate(args: argparse.Namespace) -> int:
    """The server's validation when the template exists (it also checks referenced secrets); otherwise
    the same rules from the pure core, offline."""
    document = _load(args.file)
    with _client(args) as client:
        existing = client.get_template(args.id) if args.id else _find_by_name(client, str(document.get("name")))
        if existing is not None:
            result = client.validate_template(existing.id, document)
            valid, errors, by = result.valid, [(e.pointer, e.message) for e in result.errors], "server"
        else:
            from core.validation import validate_template

            problems = validate_template(document)
            valid, errors, by = not problems, [_problem_pair(p) for p in problems], "core (no such template yet)"
    if args.json:
        emit_json({"valid": valid, "validated_by": by, "errors": [{"pointer": p, "message": m} for p, m in errors]})
    else:
        print(f"{'valid' if valid else 'INVALID'} (validated by {by})")
        for pointer, message in errors:
            print(f"  {pointer or '/'}: {message}")
    return 0 if valid else 1


def _problem_pair(problem: Any) -> tuple[str, str]:
    if isinstance(problem, dict):
        return str(problem.get("pointer", "")), str(problem.get("message", ""))
    return str(getattr(problem, "pointer", "")), str(getattr(problem, "message", problem))


def templates_diff(args: argparse.Namespace) -> int:
    with _client(args) as client:
        left, right = _document(client, args.a), _document(client, args.b)
    a = json.dumps(left, indent=2, sort_keys=True).splitlines()
    b = json.dumps(right, indent=2, sort_keys=True).splitlines()
    lines = list(difflib.unified_diff(a, b, fromfile=args.a, tofile=args.b, lineterm=""))
    if args.json:
        emit_json({"a": args.a, "b": args.b, "same": not lines, "diff": lines})
    else:
        print("\n".join(lines) if lines else "no differences")
    return 3 if lines else 0


def _document(client: Client, ref: str) -> dict[str, Any]:
    """A file path, or a template id with an optional `@version`."""
    if Path(ref).is_file() or ref == "-":
        return _load(ref)
    template_id, _, version = ref.partition("@")
    return client.get_template(template_id, int(version) if version else None).document


# ------------------------------------------------------------------------------------------------ instances

def instances_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        iterator = client.iter_instances(status=args.status, template_id=args.template,
                                         blocked_on_me=args.blocked_on_me, page_size=min(args.limit, 200))
        items = [item for _, item in zip(range(args.limit), iterator, strict=False)]
    if args.json:
        emit_json([i.raw for i in items])
    else:
        print(table([(i.id, i.template_id, i.status, i.current_step, i.current_step_name,
                      (i.blocking or {}).get("waiting_for"), i.created_at) for i in items],
                    ["id", "template", "status", "step", "step name", "waiting for", "created"]))
    return 0


def instances_show(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _print_instance(client.get_instance(args.id), args)
    return 0


def _command(verb: str, call: Callable[[Client, argparse.Namespace], Any]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        with _client(args) as client:
            _print_command(call(client, args), args, verb)
        return 0

    return run


def _trigger_data(raw: str) -> dict[str, Any]:
    """--data: a JSON object, or @FILE holding one (the manual trigger's data)."""
    text = Path(raw[1:]).read_text() if raw.startswith("@") else raw
    data = json.loads(text)
    if not isinstance(data, dict):
        raise argparse.ArgumentTypeError("--data must be a JSON object")
    return data


instances_start = _command("started", lambda c, a: c.start_instance(
    a.template, a.data, wait=not a.no_wait, idempotency_key=a.idempotency_key))
instances_approve = _command("approved", lambda c, a: c.approve(a.id, a.step, a.reason, wait=not a.no_wait))
instances_reject = _command("rejected", lambda c, a: c.reject(a.id, a.step, a.reason, wait=not a.no_wait))
instances_cancel = _command("cancelled", lambda c, a: c.cancel(a.id, a.reason, wait=not a.no_wait))
instances_retry = _command("retried", lambda c, a: c.retry_step(a.id, a.step, wait=not a.no_wait))


def instances_transitions(args: argparse.Namespace) -> int:
    """The current state of a state-machine instance and its transitions; with --to, request one."""
    with _client(args) as client:
        if args.to:
            _print_command(client.request_transition(args.id, args.to, args.reason, wait=not args.no_wait), args,
                           f"moved towards {args.to}")
            return 0
        view = client.transitions(args.id)
    if args.json:
        emit_json(view.raw)
    else:
        print(f"state: {view.state or '(not a state machine)'}"
              + (f"  (pending approval to {view.pending_transition})" if view.pending_transition else ""))
        print(table([(t.to, "yes" if t.available else "no", "auto" if t.automatic else "",
                      "approval" if t.requires_approval else "", t.why_not or "") for t in view.transitions],
                    ["to", "available", "automatic", "approval", "why not"]))
    return 0


def pending(args: argparse.Namespace) -> int:
    with _client(args) as client:
        items = client.pending(args.limit)
    if args.json:
        emit_json([p.raw for p in items])
    else:
        print(table([(p.instance_id, p.step, p.step_name, p.kind, f"{p.approvals}/{p.required}", p.amount,
                      p.deadline) for p in items],
                    ["instance", "step", "step name", "kind", "approvals", "amount", "deadline"]))
    return 0


# ------------------------------------------------------------------------------------------------ kafka

def _topic(args: argparse.Namespace, name: str) -> str:
    return (args.topic_prefix or "") + name


def event_json(event: Any) -> dict[str, Any]:
    """A decoded `workflow.events` record as a JSON object: its type and its fields."""
    fields = dataclasses.asdict(event) if dataclasses.is_dataclass(event) else {"value": event}
    return {**fields, "event_type": type(event).__name__}


async def _tail(args: argparse.Namespace) -> int:
    from aiokafka import AIOKafkaConsumer

    from schemas.codec import Codec

    codec = Codec()
    consumer = AIOKafkaConsumer(_topic(args, "workflow.events"), bootstrap_servers=args.bootstrap,
                                isolation_level="read_committed", enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest" if args.from_beginning else "latest")
    await consumer.start()
    seen = 0
    deadline = time.monotonic() + args.timeout if args.timeout else None
    try:
        while deadline is None or time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    key = record.key.decode("utf-8", "replace") if record.key else ""
                    if args.instance and key != args.instance:
                        continue
                    event = event_json(codec.decode(record.value))
                    if args.json:
                        print(json.dumps(event, default=_json_default), flush=True)
                    else:
                        detail = event.get("reason") or event.get("reasoning") or event.get("error") or ""
                        print(f"{key}  #{event.get('seq', '-')}  {event['event_type']}  step {event.get('step', '-')}  "
                              f"{detail}".rstrip(), flush=True)
                    seen += 1
                    if (args.count and seen >= args.count) or (args.until and event["event_type"] == args.until):
                        return 0
    finally:
        await consumer.stop()
    return 0 if not (args.count or args.until) else 4


def events_tail(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_tail(args))
    except KeyboardInterrupt:
        return 0


async def _send_transfer(args: argparse.Namespace) -> dict[str, Any]:
    from aiokafka import AIOKafkaProducer

    event_id = args.event_id or f"evt_{uuid.uuid4().hex[:12]}"
    metadata = dict(kv.split("=", 1) for kv in args.metadata or [])
    if args.type:
        metadata["type"] = args.type
    event = {"event_id": event_id, "transfer_id": args.transfer_id or f"tr_{event_id}", "tenant_id": args.tenant,
             "amount_minor": round(args.amount * 10 ** args.exponent), "currency": args.currency,
             "metadata": metadata}
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        await producer.send_and_wait(_topic(args, "payments.transfers"), json.dumps(event).encode(),
                                     key=event_id.encode())
    finally:
        await producer.stop()
    return {"topic": _topic(args, "payments.transfers"), "event": event}


def send_transfer(args: argparse.Namespace) -> int:
    sent = asyncio.run(_send_transfer(args))
    if args.json:
        emit_json(sent)
    else:
        event = sent["event"]
        print(f"sent {event['event_id']} ({event['transfer_id']}, {args.amount} {event['currency']}, tenant "
              f"{event['tenant_id']}) to {sent['topic']}")
    return 0


# ------------------------------------------------------------------------------------------------ parser

def build_parser(prog: str = "flowline") -> argparse.ArgumentParser:
    api = argparse.ArgumentParser(add_help=False)
    api.add_argument("--url", default=None, help="gateway base URL (default $FLOWLINE_URL or http://127.0.0.1:8700)")
    api.add_argument("--token", default=None, help="API token (default $FLOWLINE_TOKEN)")
    api.add_argument("--timeout", type=float, default=30.0, help="seconds per HTTP request")
    out = argparse.ArgumentParser(add_help=False)
    out.add_argument("--json", action="store_true", help="machine-readable JSON instead of a table")
    kafka = argparse.ArgumentParser(add_help=False)
    kafka.add_argument("--bootstrap", default=env("FLOWLINE_KAFKA_BOOTSTRAP"),
                       help="Kafka bootstrap servers (default $FLOWLINE_KAFKA_BOOTSTRAP or the dev broker)")
    kafka.add_argument("--topic-prefix", default=env("FLOWLINE_TOPIC_PREFIX"),
                       help="topic name prefix (default $FLOWLINE_TOPIC_PREFIX)")
    both = [api, out]

    parser = argparse.ArgumentParser(prog=prog, description="Flowline user commands (see docs/cli.md)")
    sub = parser.add_subparsers(dest="command", required=True)

    templates = sub.add_parser("templates", help="list, show, apply, validate, diff templates")
    tsub = templates.add_subparsers(dest="action", required=True)
    p = tsub.add_parser("list", parents=both, help="the tenant's templates")
    p.add_argument("--status", choices=["ACTIVE", "DRAFT", "PAUSED"])
    p.set_defaults(func=templates_list)
    p = tsub.add_parser("show", parents=both, help="one template and its steps")
    p.add_argument("id")
    p.add_argument("--version", type=int)
    p.set_defaults(func=templates_show)
    p = tsub.add_parser("apply", parents=both, help="create, or publish a new version of the template of that name")
    p.add_argument("-f", "--file", required=True, help="template document (.json, .yaml; - for stdin)")
    p.add_argument("--id", help="update this template instead of looking it up by name")
    p.set_defaults(func=templates_apply)
    p = tsub.add_parser("validate", parents=both, help="validate a document (server-side if the template exists)")
    p.add_argument("-f", "--file", required=True)
    p.add_argument("--id", help="validate as a new version of this template")
    p.set_defaults(func=templates_validate)
    p = tsub.add_parser("diff", parents=both, help="unified diff of two documents (ids, id@version or files)")
    p.add_argument("a")
    p.add_argument("b")
    p.set_defaults(func=templates_diff)

    instances = sub.add_parser("instances", help="list, show and act on instances")
    isub = instances.add_subparsers(dest="action", required=True)
    p = isub.add_parser("list", parents=both, help="instances, newest first")
    p.add_argument("--status", choices=["ACTIVE", "PAUSED", "COMPLETED", "CANCELLED", "FAILED"])
    p.add_argument("--template", help="only this template id")
    p.add_argument("--blocked-on-me", action="store_true", help="only instances waiting for the caller")
    p.add_argument("--limit", type=int, default=50, help="at most this many (follows cursors past one page)")
    p.set_defaults(func=instances_list)
    p = isub.add_parser("show", parents=both, help="status, steps and the audit trail")
    p.add_argument("id")
    p.set_defaults(func=instances_show)
    for name, func, help_text in (("approve", instances_approve, "approve a waiting step"),
                                  ("reject", instances_reject, "reject a waiting step")):
        p = isub.add_parser(name, parents=both, help=help_text)
        p.add_argument("id")
        p.add_argument("step", type=int)
        p.add_argument("--reason", "-r", default=None, help="reasoning, kept in the audit trail")
        p.add_argument("--no-wait", action="store_true", help="return once the command is accepted")
        p.set_defaults(func=func)
    p = isub.add_parser("start", parents=both, help="start an instance of a template (a manual trigger)")
    p.add_argument("template", help="template id")
    p.add_argument("--data", "-d", type=_trigger_data, default={},
                   help='trigger data: a JSON object, or @FILE (e.g. \'{"id": "tr_1", "amount": 2500}\')')
    p.add_argument("--idempotency-key", default=None, help="the same key starts the same instance once")
    p.add_argument("--no-wait", action="store_true")
    p.set_defaults(func=instances_start)
    p = isub.add_parser("cancel", parents=both, help="cancel an instance")
    p.add_argument("id")
    p.add_argument("--reason", "-r", default=None)
    p.add_argument("--no-wait", action="store_true")
    p.set_defaults(func=instances_cancel)
    p = isub.add_parser("retry", parents=both, help="retry the failed step of a FAILED instance")
    p.add_argument("id")
    p.add_argument("step", type=int)
    p.add_argument("--no-wait", action="store_true")
    p.set_defaults(func=instances_retry)
    p = isub.add_parser("transitions", parents=both,
                        help="a state-machine instance's state and transitions (why not); --to requests one")
    p.add_argument("id")
    p.add_argument("--to", default=None, help="request the transition to this state")
    p.add_argument("--reason", "-r", default=None, help="why, kept in the audit trail")
    p.add_argument("--no-wait", action="store_true")
    p.set_defaults(func=instances_transitions)

    p = sub.add_parser("pending", parents=both, help="approvals waiting for you")
    p.add_argument("--limit", type=int, default=None)
    p.set_defaults(func=pending)

    events = sub.add_parser("events", help="follow workflow.events")
    esub = events.add_subparsers(dest="action", required=True)
    p = esub.add_parser("tail", parents=[out, kafka], help="print workflow.events as they are committed")
    p.add_argument("--instance", help="only this instance's events")
    p.add_argument("--from-beginning", action="store_true", help="start at the oldest retained event")
    p.add_argument("--until", metavar="EVENT_TYPE", help="stop after an event of this type (e.g. InstanceCompleted)")
    p.add_argument("--count", type=int, default=0, help="stop after this many events")
    p.add_argument("--timeout", type=float, default=0.0, help="stop after this many seconds (exit 4 if --until/"
                                                              "--count was not reached)")
    p.set_defaults(func=events_tail)

    send = sub.add_parser("send", help="publish test events")
    ssub = send.add_subparsers(dest="action", required=True)
    p = ssub.add_parser("transfer", parents=[out, kafka], help="a JSON transfer event on payments.transfers")
    p.add_argument("--amount", type=float, required=True, help="in major units (2500 = 2,500.00)")
    p.add_argument("--tenant", required=True)
    p.add_argument("--currency", default="USD")
    p.add_argument("--exponent", type=int, default=2, help="minor units per major unit, as a power of ten")
    p.add_argument("--type", default="procurement", help="metadata.type (what procurement triggers match)")
    p.add_argument("--metadata", nargs="*", metavar="KEY=VALUE", help="more metadata")
    p.add_argument("--event-id")
    p.add_argument("--transfer-id")
    p.set_defaults(func=send_transfer)
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "flowline") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ApiError as exc:
        if getattr(args, "json", False):
            emit_json({"status": exc.status, **exc.problem})
        print(f"{prog}: {exc.status} {exc.title or 'error'}: {exc.detail}"
              + (f" ({exc.pointer})" if exc.pointer else ""), file=sys.stderr)
        for error in exc.errors:
            print(f"  {error.pointer or '/'}: {error.message}", file=sys.stderr)
        return 1
    except (TransportError, FlowlineError, OSError, ValueError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
