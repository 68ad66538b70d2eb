"""`flowline mcp`: Flowline as an MCP server for AI agents (docs/agents.md).

An adapter like the gateway's other clients: tools, resources and prompts call the REST API through
`flowline.client` with the agent's own token, so every rule stays where it lives (gateway, core). Built on
the official `mcp` SDK (2.x, `MCPServer`); `flowline.mcp.describe` holds the wording, `flowline.mcp.server`
the tools, `flowline.mcp.cli` the command.
"""

from flowline.mcp.server import McpSettings, build_server

__all__ = ["McpSettings", "build_server"]
