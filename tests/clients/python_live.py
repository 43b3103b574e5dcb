#!/usr/bin/env python3
"""Live resources with the official MCP Python SDK (2025 era: initialize, resources/subscribe).

Usage:
    python_live.py live   FOLDER stdio <portcullis-binary> <config>
    python_live.py live   FOLDER http <url> [<bearer-token>]
    python_live.py denied FOLDER http <url> <bearer-token>

FOLDER is the notes folder the server serves as `note://` (it must hold `welcome.md`); this
client edits it from outside the server, as an editor would.

live:   subscribe to note://welcome, edit the file, expect notifications/resources/updated
        within 2 s; create a note, expect list_changed and the new note listed; delete it,
        expect list_changed; unsubscribe, edit again, expect no update. Prints
        `latency_ms {"updated": ..., "created": ..., "deleted": ...}`.
denied: the principal lacks the notes scope: the notes are not listed, a read and a
        subscription are refused, and edits, creations and deletions reach it as nothing.
Exits non-zero on the first failure, "all checks passed" at the end.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from typing import Any

import anyio
import httpx2
from mcp import ClientSession, MCPError, types
from mcp.client.stdio import StdioServerParameters, get_default_environment, stdio_client
from mcp.client.streamable_http import streamable_http_client

TIMEOUT_SECS = 120
WITHIN_SECS = 2.0
QUIET_SECS = 1.5
URI = "note://welcome"


class Inbox:
    """Every server notification, with the time it arrived."""

    def __init__(self) -> None:
        self.items: list[tuple[float, Any]] = []
        self.event = anyio.Event()

    async def handler(self, message: Any) -> None:
        if isinstance(message, Exception):
            return
        message = getattr(message, "root", message)
        self.items.append((time.monotonic(), message))
        self.event.set()
        self.event = anyio.Event()

    def since(self, start: float) -> list[tuple[float, Any]]:
        return [(t, m) for t, m in self.items if t >= start]

    async def wait_for(self, start: float, pred, within: float) -> float | None:
        """Seconds from `start` to the first notification matching `pred`, or None."""
        deadline = start + within
        while True:
            for t, m in self.since(start):
                if pred(m):
                    return t - start
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            with anyio.move_on_after(left):
                await self.event.wait()


def is_updated(uri: str):
    return lambda m: isinstance(m, types.ResourceUpdatedNotification) and str(m.params.uri) == uri


def is_list_changed(m: Any) -> bool:
    return isinstance(m, types.ResourceListChangedNotification)


def write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def ok(what: str) -> None:
    print(f"ok   {what}", flush=True)


async def listed(session: ClientSession) -> list[str]:
    return [str(r.uri) for r in (await session.list_resources()).resources]


async def live(session: ClientSession, inbox: Inbox, folder: str) -> None:
    welcome = os.path.join(folder, "welcome.md")
    uris = await listed(session)
    if URI not in uris:
        raise AssertionError(f"{URI} not listed: {uris}")
    ok("resources/list has note://welcome")
    await session.subscribe_resource(URI)
    ok("resources/subscribe")
    # Let the watcher settle after the subscription before the first edit.
    await anyio.sleep(0.2)

    start = time.monotonic()
    write(welcome, "# Welcome\n\nEdited from outside the server.\n")
    updated = await inbox.wait_for(start, is_updated(URI), WITHIN_SECS)
    if updated is None:
        raise AssertionError(f"no notifications/resources/updated for {URI} within {WITHIN_SECS}s: {inbox.since(start)}")
    ok(f"updated after an outside edit ({updated * 1000:.0f} ms)")
    text = "".join(c.text for c in (await session.read_resource(URI)).contents)
    if "Edited from outside" not in text:
        raise AssertionError(f"read after update: {text!r}")
    ok("read after the update has the new text")

    start = time.monotonic()
    write(os.path.join(folder, "fresh.md"), "# Fresh\n")
    created = await inbox.wait_for(start, is_list_changed, WITHIN_SECS)
    if created is None:
        raise AssertionError(f"no list_changed after a note was created: {inbox.since(start)}")
    if "note://fresh" not in await listed(session):
        raise AssertionError("the new note is not listed")
    ok(f"list_changed after a create ({created * 1000:.0f} ms), new note listed")

    await anyio.sleep(0.3)
    start = time.monotonic()
    os.remove(os.path.join(folder, "fresh.md"))
    deleted = await inbox.wait_for(start, is_list_changed, WITHIN_SECS)
    if deleted is None:
        raise AssertionError("no list_changed after a note was deleted")
    if "note://fresh" in await listed(session):
        raise AssertionError("the deleted note is still listed")
    ok(f"list_changed after a delete ({deleted * 1000:.0f} ms)")

    await session.unsubscribe_resource(URI)
    ok("resources/unsubscribe")
    start = time.monotonic()
    write(welcome, "# Welcome\n\nEdited again, nobody listening.\n")
    await anyio.sleep(QUIET_SECS)
    late = [m for _, m in inbox.since(start) if is_updated(URI)(m)]
    if late:
        raise AssertionError(f"updates after unsubscribe: {late}")
    ok("no update after unsubscribe")
    print("latency_ms " + json.dumps({
        "updated": round(updated * 1000), "created": round(created * 1000), "deleted": round(deleted * 1000),
    }), flush=True)


async def denied(session: ClientSession, inbox: Inbox, folder: str) -> None:
    uris = await listed(session)
    if any(u.startswith("note://") for u in uris):
        raise AssertionError(f"notes listed to a principal without the scope: {uris}")
    ok("no notes listed")
    for what, call in [("read", session.read_resource(URI)), ("subscribe", session.subscribe_resource(URI))]:
        try:
            await call
        except MCPError as e:
            ok(f"{what} refused: {e.error.code} {e.error.message}")
        else:
            raise AssertionError(f"{what} of {URI} was allowed")
    start = time.monotonic()
    # A note of its own (welcome.md belongs to the reader running alongside): created,
    # edited, then deleted.
    write(os.path.join(folder, "secret.md"), "# Secret\n")
    await anyio.sleep(QUIET_SECS)
    write(os.path.join(folder, "secret.md"), "# Secret\n\nA change the denied client must not hear of.\n")
    await anyio.sleep(QUIET_SECS)
    os.remove(os.path.join(folder, "secret.md"))
    await anyio.sleep(QUIET_SECS)
    heard = [m for _, m in inbox.since(start)]
    if heard:
        raise AssertionError(f"a principal without the scope heard: {heard}")
    ok("nothing heard of edits, creations and deletions")


async def main(argv: list[str]) -> int:
    if len(argv) < 5 or argv[1] not in ("live", "denied") or argv[3] not in ("stdio", "http"):
        print(__doc__, file=sys.stderr)
        return 2
    what, folder, mode, target = argv[1], argv[2], argv[3], argv[4:]
    inbox = Inbox()
    try:
        with anyio.fail_after(TIMEOUT_SECS):
            if mode == "stdio":
                params = StdioServerParameters(
                    command=target[0],
                    args=["serve", "--stdio", "--config", target[1]],
                    env=get_default_environment(),
                )
                transport = stdio_client(params)
            else:
                headers = {"Authorization": f"Bearer {target[1]}"} if len(target) > 1 else {}
                transport = streamable_http_client(target[0], http_client=httpx2.AsyncClient(headers=headers, timeout=60))
            async with transport as (read, write_stream):
                async with ClientSession(read, write_stream, message_handler=inbox.handler) as session:
                    init = await session.initialize()
                    ok(f"initialize: {init.server_info.name}, protocol {init.protocol_version}")
                    caps = init.capabilities.resources
                    if what == "live" and not (caps and caps.subscribe and caps.list_changed):
                        raise AssertionError(f"resources capability lacks subscribe/listChanged: {caps}")
                    await (live if what == "live" else denied)(session, inbox, folder)
    except BaseException as e:  # noqa: BLE001 - report anything, incl. ExceptionGroups / timeouts
        print(f"FAIL {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        traceback.print_exception(e, file=sys.stderr)
        return 1
    print(f"all checks passed ({what}, {mode})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(anyio.run(main, sys.argv))
