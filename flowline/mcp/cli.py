"""The `flowline mcp` command: serve the MCP tools over stdio (one agent, its token from `--token` or
`FLOWLINE_TOKEN`) or streamable HTTP (`--http`: every MCP client sends its own `Authorization: Bearer`
header, and the server holds no token of its own, so a reachable port never lends anyone an identity).

    flowline mcp --token fl_dev_agent_456                      # stdio, for a desktop MCP client
    flowline mcp --http --port 8702                            # http://127.0.0.1:8702/mcp
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from schemas.settings import env, env_int, given

DEFAULT_PATH = "/mcp"


def default_port() -> int:
    """`FLOWLINE_MCP_PORT`, else the gateway port + 2 (8702 on the dev stack; the engine has + 1)."""
    return int(given("FLOWLINE_MCP_PORT") or env_int("FLOWLINE_GATEWAY_PORT") + 2)


def build_parser(prog: str = "flowline mcp") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Serve Flowline to AI agents over the Model Context Protocol (docs/agents.md)")
    parser.add_argument("--url", help="gateway base URL (default: $FLOWLINE_URL, else http://127.0.0.1:"
                                      "$FLOWLINE_GATEWAY_PORT, 8700)")
    parser.add_argument("--token", help="stdio: the agent's bearer token (default: $FLOWLINE_TOKEN)")
    parser.add_argument("--conversation-id", help="conversation id for the audit trail (default: "
                                                  "$FLOWLINE_CONVERSATION_ID, else one per MCP session)")
    parser.add_argument("--read-only", action="store_true", help="offer only the tools that read")
    parser.add_argument("--http", action="store_true", help="serve streamable HTTP instead of stdio")
    parser.add_argument("--host", default=env("FLOWLINE_MCP_HOST"),
                        help="--http: bind address (default 127.0.0.1, or $FLOWLINE_MCP_HOST)")
    parser.add_argument("--port", type=int, default=None,
                        help="--http: port (default: $FLOWLINE_MCP_PORT, else the gateway port + 2)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    from flowline.mcp.server import McpSettings, build_server, default_url

    url = (args.url or default_url()).rstrip("/")
    conversation = args.conversation_id or given("FLOWLINE_CONVERSATION_ID")
    if args.http:
        if args.token:
            print("flowline mcp: --token is for stdio; over HTTP each client sends its own Authorization header",
                  file=sys.stderr)
            return 2
        settings = McpSettings(url=url, token=None, conversation_id=conversation, read_only=args.read_only)
        server = build_server(settings)
        port = args.port if args.port is not None else default_port()
        logging.getLogger("flowline.mcp").info("flowline mcp on http://%s:%d%s (gateway %s)", args.host, port,
                                               DEFAULT_PATH, url)
        server.run("streamable-http", host=args.host, port=port, streamable_http_path=DEFAULT_PATH)
        return 0
    token = args.token or given("FLOWLINE_TOKEN")
    if not token:
        print("flowline mcp: no token; pass --token or set FLOWLINE_TOKEN (the agent's bearer token)",
              file=sys.stderr)
        return 2
    server = build_server(McpSettings(url=url, token=token, conversation_id=conversation, read_only=args.read_only))
    server.run("stdio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
