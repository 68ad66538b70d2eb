"""The `flowline` command.

    flowline stack up [--profile dev|test] [--no-processes] [--fresh]
    flowline stack down [--profile dev|test]
    flowline stack status [--profile dev|test]

Process commands (`flowline engine`, `flowline handler <kind>`, `flowline gateway`, ...) are added by
registering a subparser in `build_parser()` with `set_defaults(func=...)`; `func(args)` returns an exit code.
"""

from __future__ import annotations

import argparse
import sys


def _stack(args: argparse.Namespace) -> int:
    from deploy import stack

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
    parser = argparse.ArgumentParser(prog="flowline", description="Flowline: Kafka-native workflow engine")
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

    # engine / handler / gateway / projector subcommands are registered here by their owners.
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
