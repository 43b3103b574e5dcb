#!/usr/bin/env python3
"""Run a plan of MCP requests against Portcullis with the official MCP Python SDK.

Usage:
    python_plan.py PLAN.json stdio <portcullis-binary> <config>
    python_plan.py PLAN.json http <url> [<bearer-token>]
    python_plan.py PLAN.json sse <sse-url> [<bearer-token>]     (the deprecated HTTP+SSE transport)

The plan is a JSON list of steps, run in order in one 2025-era session (the low-level
`ClientSession` with `initialize`, as most deployed clients use it):

    {"tool": NAME, "arguments": {...}, "is_error": false, "contains": ["..."], "absent": ["..."]}
    {"resource": URI, "contains": [...]}        (or "error": "..." : the read must fail saying it)
    {"prompt": NAME, "arguments": {...}, "contains": [...]}
    {"list": "tools" | "resources" | "prompts" | "templates", "contains": [...]}
    {"log_level": "info"}                       (logging/setLevel for the session)

A tool step may also give `"elicit": "accept" | "decline" | "cancel" | "wait"` (how the
client answers an `elicitation/create` during the call: the session declares elicitation,
and `wait` never answers) and `"elicited": [...]` (substrings of the request's message; at
least one request must have come), and `"progress": N` (exactly N progress notifications must arrive,
the last one equal to its total) and `"logs": [...]` (substrings of the data of the log
messages received during the call).

`contains` are substrings the result's text must hold, `absent` substrings it must not.
Over stdio, the variables named in `PLAN_PASS_ENV` (comma-separated) are passed to the
server (the SDK gives a server only a default set otherwise).
Prints one line per step; exits non-zero on the first failure, "all checks passed" at the end.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any

import anyio
import httpx2
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.stdio import StdioServerParameters, get_default_environment, stdio_client
from mcp.client.streamable_http import streamable_http_client

TIMEOUT_SECS = 120


def text_of(content: list[Any]) -> str:
    return "\n".join(t for t in (getattr(b, "text", None) for b in content) if t is not None)


LOGS: list[str] = []
ELICIT = {"mode": "decline"}
ELICITED: list[str] = []


async def on_elicit(context: Any, params: Any) -> Any:
    from mcp import types

    ELICITED.append(getattr(params, "message", ""))
    mode = ELICIT["mode"]
    if mode == "wait":
        await anyio.sleep(3600)
    if mode == "accept":
        return types.ElicitResult(action="accept", content={})
    return types.ElicitResult(action=mode)


async def on_log(params: Any) -> None:
    LOGS.append(f"{params.level} {json.dumps(params.data)}")


async def run_step(session: ClientSession, step: dict[str, Any]) -> None:
    if "log_level" in step:
        await session.set_logging_level(step["log_level"])
        print(f"ok   logging/setLevel {step['log_level']}", flush=True)
        return
    if "tool" in step:
        what = f"tools/call {step['tool']}"
        progress: list[tuple[float, float | None, str | None]] = []

        async def on_progress(done: float, total: float | None, message: str | None) -> None:
            progress.append((done, total, message))

        LOGS.clear()
        ELICITED.clear()
        ELICIT["mode"] = step.get("elicit", "decline")
        result = await session.call_tool(
            step["tool"], step.get("arguments", {}),
            progress_callback=on_progress if "progress" in step else None,
        )
        text = text_of(result.content)
        if "progress" in step:
            if len(progress) != step["progress"] or progress[-1][0] != progress[-1][1]:
                raise AssertionError(f"{what}: expected {step['progress']} progress notifications ending at the total, got {progress}")
            print(f"ok   {what}: progress {progress}", flush=True)
        for needle in step.get("logs", []):
            # Notifications may trail the response a little.
            for _ in range(50):
                if any(needle in line for line in LOGS):
                    break
                await anyio.sleep(0.02)
            else:
                raise AssertionError(f"{what}: no log message with {needle!r}: {LOGS}")
        if "elicited" in step:
            if not ELICITED:
                raise AssertionError(f"{what}: no elicitation request came")
            for needle in step["elicited"]:
                if not any(needle in m for m in ELICITED):
                    raise AssertionError(f"{what}: no elicitation message with {needle!r}: {ELICITED}")
        if result.structured_content is not None:
            text += "\n" + json.dumps(result.structured_content)
        expected = step.get("is_error", False)
        if bool(result.is_error) != expected:
            raise AssertionError(f"{what}: isError {result.is_error}, expected {expected}: {text[:400]}")
    elif "resource" in step:
        what = f"resources/read {step['resource']}"
        if "error" in step:
            try:
                result = await session.read_resource(step["resource"])
            except Exception as e:  # noqa: BLE001 - the SDK raises its McpError
                if step["error"] not in str(e):
                    raise AssertionError(f"{what}: expected an error with {step['error']!r}, got {e}") from e
                print(f"ok   {what}: refused ({e})", flush=True)
                return
            raise AssertionError(f"{what}: expected an error, got {result}")
        result = await session.read_resource(step["resource"])
        text = "\n".join(getattr(c, "text", "") or "" for c in result.contents)
    elif "prompt" in step:
        what = f"prompts/get {step['prompt']}"
        result = await session.get_prompt(step["prompt"], step.get("arguments", {}))
        text = "\n".join(text_of([m.content]) for m in result.messages)
    else:
        what = f"{step['list']}/list"
        if step["list"] == "tools":
            text = " ".join(t.name for t in (await session.list_tools()).tools)
        elif step["list"] == "resources":
            text = " ".join(str(r.uri) for r in (await session.list_resources()).resources)
        elif step["list"] == "templates":
            text = " ".join(t.uri_template for t in (await session.list_resource_templates()).resource_templates)
        else:
            text = " ".join(p.name for p in (await session.list_prompts()).prompts)
    for needle in step.get("contains", []):
        if needle not in text:
            raise AssertionError(f"{what}: expected {needle!r} in {text[:600]!r}")
    for needle in step.get("absent", []):
        if needle in text:
            raise AssertionError(f"{what}: {needle!r} must not appear in {text[:600]!r}")
    print(f"ok   {what}", flush=True)


async def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] not in ("stdio", "http", "sse"):
        print(__doc__, file=sys.stderr)
        return 2
    plan = json.loads(open(argv[1]).read())
    mode, target = argv[2], argv[3:]
    try:
        with anyio.fail_after(TIMEOUT_SECS):
            if mode == "stdio":
                env = get_default_environment()
                for name in filter(None, os.environ.get("PLAN_PASS_ENV", "").split(",")):
                    if name in os.environ:
                        env[name] = os.environ[name]
                params = StdioServerParameters(
                    command=target[0], args=["serve", "--stdio", "--config", target[1]], env=env
                )
                transport = stdio_client(params)
            elif mode == "sse":
                headers = {"Authorization": f"Bearer {target[1]}"} if len(target) > 1 else {}
                transport = sse_client(target[0], headers=headers, timeout=60)
            else:
                headers = {"Authorization": f"Bearer {target[1]}"} if len(target) > 1 else {}
                transport = streamable_http_client(target[0], http_client=httpx2.AsyncClient(headers=headers, timeout=60))
            async with transport as (read, write):
                async with ClientSession(read, write, logging_callback=on_log, elicitation_callback=on_elicit) as session:
                    init = await session.initialize()
                    print(f"ok   initialize: {init.server_info.name}, protocol {init.protocol_version}", flush=True)
                    for step in plan:
                        await run_step(session, step)
    except BaseException as e:  # noqa: BLE001 - report anything, incl. ExceptionGroups / timeouts
        print(f"FAIL {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        traceback.print_exception(e, file=sys.stderr)
        return 1
    print(f"all checks passed ({mode})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(anyio.run(main, sys.argv))
