#!/usr/bin/env python3
"""A 2025-era client of a Portcullis cluster, with the official MCP Python SDK.

Usage: python_cluster.py URL TOKEN CALLS UPDATES

Initializes one session through URL (a load balancer in front of several replicas), makes
CALLS tool calls in it (the balancer spreads them over the replicas), subscribes to
note://shared and prints `subscribed`; the test then changes the note UPDATES times, each
through another replica (each replica has a notes folder of its own, so only that replica
sees the change). Expects exactly UPDATES notifications/resources/updated for it (one per
change, none twice), reads the note back, and prints "all checks passed".
"""

from __future__ import annotations

import sys
import time
import traceback
from typing import Any

import anyio
import httpx2
from mcp import ClientSession, types
from mcp.client.streamable_http import streamable_http_client

URI = "note://shared"
WITHIN_SECS = 30.0
QUIET_SECS = 2.0


def ok(what: str) -> None:
    print(f"ok   {what}", flush=True)


async def main(url: str, token: str, calls: int, updates: int) -> None:
    with anyio.fail_after(120):
        await session_checks(url, token, calls, updates)
    print("all checks passed", flush=True)


async def session_checks(url: str, token: str, calls: int, updates: int) -> None:
    heard: list[float] = []
    arrived = anyio.Event()

    async def handler(message: Any) -> None:
        nonlocal arrived
        if isinstance(message, Exception):
            return
        message = getattr(message, "root", message)
        if isinstance(message, types.ResourceUpdatedNotification) and str(message.params.uri) == URI:
            heard.append(time.monotonic())
            # The test writes the next change once this one is heard.
            print(f"heard {len(heard)}", flush=True)
            arrived.set()
            arrived = anyio.Event()

    client = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60)
    async with streamable_http_client(url, http_client=client) as (read, write):
        async with ClientSession(read, write, message_handler=handler) as session:
            init = await session.initialize()
            ok(f"initialize: protocol {init.protocol_version}")
            for i in range(calls):
                result = await session.call_tool("read_file", {"path": "hello.txt"})
                text = "".join(c.text for c in result.content if hasattr(c, "text"))
                if result.is_error or "hello" not in text:
                    raise AssertionError(f"call {i}: {result}")
            ok(f"{calls} tool calls in one session")
            await session.subscribe_resource(URI)
            ok("resources/subscribe")
            print("subscribed", flush=True)
            deadline = time.monotonic() + WITHIN_SECS
            while len(heard) < updates and time.monotonic() < deadline:
                with anyio.move_on_after(deadline - time.monotonic()):
                    await arrived.wait()
            if len(heard) < updates:
                raise AssertionError(f"heard {len(heard)} of {updates} updates within {WITHIN_SECS}s")
            await anyio.sleep(QUIET_SECS)
            if len(heard) != updates:
                raise AssertionError(f"heard {len(heard)} updates for {updates} changes: some came twice")
            ok(f"heard each of {updates} changes exactly once")
            contents = (await session.read_resource(URI)).contents
            text = "".join(c.text for c in contents if hasattr(c, "text"))
            if "# Shared" not in text:
                raise AssertionError(f"read after the updates: {text!r}")
            ok("read the note back (the copy of whichever replica answered)")


if __name__ == "__main__":
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    try:
        anyio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    except Exception:  # noqa: BLE001 - the test prints whatever went wrong
        traceback.print_exc()
        sys.exit(1)
