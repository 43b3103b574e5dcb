"""The official Python MCP SDK's server with one tool, `file_info`, for `cargo xtask bench`.

Written to target/bench/py/server.py and run with the venv next to it (the SDK version is
pinned in tests/clients/requirements.txt). HTTP: MCPServer's Streamable HTTP app, stateless,
JSON responses, on uvicorn with its defaults (one process, access log at info on stderr).
The address is printed on stderr as {"listening": "127.0.0.1:PORT"}.

    server.py --root DIR            # Streamable HTTP on 127.0.0.1, a free port
    server.py --root DIR --stdio    # stdio

With --sqlite FILE --sql SQL it also has `get_top_chatters(min_messages, limit)`, written the
way the common SQLite MCP tutorial writes it: sqlite3.connect per call, execute with the two
binds, fetchall, close, the rows as dicts.
"""

import argparse
import datetime
import json
import os
import socket
import sqlite3
import sys

import anyio
from mcp.server.mcpserver import MCPServer

parser = argparse.ArgumentParser()
parser.add_argument("--root", required=True)
parser.add_argument("--stdio", action="store_true")
parser.add_argument("--sqlite")
parser.add_argument("--sql")
opts = parser.parse_args()
ROOT = os.path.realpath(opts.root)

mcp = MCPServer("bench-python")


@mcp.tool()
def file_info(path: str) -> dict:
    """Show a file's or directory's type, size and modification time."""
    if os.path.isabs(path) or os.path.normpath(path).split(os.sep)[0] == "..":
        raise ValueError(f"`{path}` leaves the root")
    full = os.path.join(ROOT, path)
    st = os.stat(full)
    modified = datetime.datetime.fromtimestamp(int(st.st_mtime), datetime.timezone.utc)
    return {
        "path": path,
        "type": "directory" if os.path.isdir(full) else "file",
        "size": st.st_size,
        "modified": modified.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


if opts.sqlite:

    @mcp.tool()
    def get_top_chatters(min_messages: int = 0, limit: int = 10) -> list[dict]:
        """The most active members of the community chat."""
        conn = sqlite3.connect(opts.sqlite)
        conn.row_factory = sqlite3.Row
        cursor = conn.cursor()
        cursor.execute(opts.sql, (min_messages, limit))
        rows = [dict(row) for row in cursor.fetchall()]
        conn.close()
        return rows


async def serve_http() -> None:
    import uvicorn

    # Bind first and hand the socket to uvicorn: the harness learns the port without a race.
    # proto must be IPPROTO_TCP: asyncio sets TCP_NODELAY only on such sockets (as on those
    # uvicorn binds itself); with proto 0, Nagle holds uvicorn's second write (the body) for
    # the client's delayed ACK, about 40 ms per keep-alive request.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    app = mcp.streamable_http_app(json_response=True, stateless_http=True, host="127.0.0.1")
    server = uvicorn.Server(uvicorn.Config(app, log_level="info"))
    print(json.dumps({"listening": "127.0.0.1:%d" % sock.getsockname()[1]}), file=sys.stderr, flush=True)
    await server.serve(sockets=[sock])


if opts.stdio:
    mcp.run("stdio")
else:
    anyio.run(serve_http)
