"""A small MCP tool server (stdio, the official SDK) for the agent's MCP tests: a ticket tracker."""

from mcp.server.mcpserver import MCPServer

server = MCPServer("tickets")


@server.tool()
def lookup_ticket(ticket: str) -> str:
    """The text of a ticket in the team's tracker."""
    if ticket == "0":
        raise ValueError("no ticket 0")
    return f"Ticket {ticket}: greet people by name, in English"


if __name__ == "__main__":
    server.run()
