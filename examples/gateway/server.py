"""A small MCP server written the way the Python SDK's guide writes one. Portcullis serves
it, behind its keys, limits and audit log, as the `guide` upstream of this profile.

Run it alone with `python3 server.py` (stdio); it needs the official SDK: `pip install mcp`.
"""

from mcp.server.mcpserver import MCPServer

mcp = MCPServer("guide")


@mcp.tool()
def greet(name: str) -> str:
    """Greet someone by name."""
    return f"Hello, {name}!"


@mcp.tool()
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@mcp.tool()
def word_count(text: str) -> int:
    """Count the words in a text."""
    return len(text.split())


if __name__ == "__main__":
    mcp.run()
