"""The `flowline` command.

    flowline stack up [--profile dev|test] [--no-processes] [--fresh]
    flowline stack down [--profile dev|test]
    flowline stack status [--profile dev|test]

User commands (`flowline templates|instances|pending|events|send ...`, docs/cli.md) live in
`flowline/cli.py`; `main` hands them over by their first word.

Process commands (`flowline engine`, `flowline handler <kind>`, `flowline gateway`, ...) are added by
registering a subparser in `build_parser()` with `set_defaults(func=...)`; `func(args)` returns an exit code.
"""

from __future__ import annotations

import argparse
import sys


def _stack(args: argparse.Namespace) -> int:
    from deploy import stackctl as stack

    profile = stack.Profile.load(args.profile)
    try:
        if args.action == "up":
            stack.up(profile, processes=not args.no_processes, fresh=True if args.fresh else None)
        elif args.action == "down":
            stack.down(profile)
        else:
            result = stack.status(profile)
            return 0 if all(s["healthy"] for s in result.values()) else 3
    except stack.StackError as exc:
        print(f"flowline stack {args.action}: {exc}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flowline", description="Flowline: Kafka-native workflow engine",
        epilog="user commands: templates, instances, pending, events, send (flowline <command> --help; docs/cli.md); "
               "mcp: the MCP server for agents (flowline mcp --help; docs/agents.md)")
    sub = parser.add_subparsers(dest="command", required=True)

    p_stack = sub.add_parser("stack", help="local stack: Kafka, PostgreSQL and the Flowline processes")
    p_stack.add_argument("action", choices=["up", "down", "status"])
    p_stack.add_argument("--profile", choices=["dev", "test"], default=None,
                         help="dev (default, or $FLOWLINE_PROFILE) or test")
    p_stack.add_argument("--no-processes", action="store_true",
                         help="up: start only Kafka and PostgreSQL, not the Flowline processes")
    p_stack.add_argument("--fresh", action="store_true",
                         help="up: wipe the profile's state dir first (the test profile always does)")
    p_stack.set_defaults(func=_stack)

    p_engine = sub.add_parser("engine", help="run an engine worker (trigger matcher, instance processor, timers)")
    p_engine.add_argument("roles", nargs="*", metavar="{matcher,processor}",
                          help="which roles to run (default: both)")
    p_engine.set_defaults(func=_engine)

    p_handler = sub.add_parser("handler", help="run a step handler consumer")
    p_handler.add_argument("kind", choices=["approval", "notification", "action", "external"])
    p_handler.set_defaults(func=_handler)

    p_gateway = sub.add_parser("gateway", help="run the HTTP gateway (API, dashboard, metrics)")
    p_gateway.set_defaults(func=_gateway)

    p_projector = sub.add_parser("projector", help="run the PostgreSQL read-model projector")
    p_projector.set_defaults(func=_projector)

    p_sim = sub.add_parser("payment-simulator", help="development tool: answer payments.commands")
    p_sim.set_defaults(func=_simulator)

    p_repart = sub.add_parser("repartition", help="grow the partition count (engines stopped; see the runbook)")
    p_repart.add_argument("--partitions", type=int, required=True)
    p_repart.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p_repart.add_argument("--from-backup", help="states from an earlier, interrupted run's backup file")
    p_repart.set_defaults(func=_repartition)

    p_seed = sub.add_parser("seed", help="publish the built-in demo templates to workflow.templates")
    p_seed.set_defaults(func=_seed)
    return parser


def _engine(args: argparse.Namespace) -> int:
    from streams.app import main as engine_main

    roles = tuple(args.roles or ("matcher", "processor"))
    unknown = sorted(set(roles) - {"matcher", "processor"})
    if unknown:
        print(f"flowline engine: unknown role(s) {', '.join(unknown)}; choose matcher and/or processor",
              file=sys.stderr)
        return 2
    engine_main(roles)
    return 0


def _handler(args: argparse.Namespace) -> int:
    from handlers.main import main as handler_main

    return int(handler_main(args.kind) or 0)


def _gateway(args: argparse.Namespace) -> int:
    from gateway.app import main as gateway_main

    return int(gateway_main() or 0)


def _projector(args: argparse.Namespace) -> int:
    from store.projector import main as projector_main

    return int(projector_main() or 0)


def _simulator(args: argparse.Namespace) -> int:
    from deploy.payment_simulator import main as simulator_main

    return int(simulator_main() or 0)


def _repartition(args: argparse.Namespace) -> int:
    from deploy.repartition import main as repartition_main

    return repartition_main(["--partitions", str(args.partitions), *(["--yes"] if args.yes else []),
                             *(["--from-backup", args.from_backup] if args.from_backup else [])])


def _seed(args: argparse.Namespace) -> int:
    from deploy.seed import main as seed_main

    return int(seed_main() or 0)


USER_COMMANDS = ("templates", "instances", "pending", "events", "send")  # flowline/cli.py


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "mcp":  # the MCP server for agents (flowline/mcp, docs/agents.md)
        from flowline.mcp.cli import main as mcp_main

        return mcp_main(argv[1:])
    if argv and argv[0] in USER_COMMANDS:
        from flowline.cli import main as user_main

        return user_main(argv)
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
