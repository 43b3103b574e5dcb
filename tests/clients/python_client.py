#!/usr/bin/env python3
"""Drive Portcullis with the official MCP Python SDK (pinned in requirements.txt).

Usage:
    python_client.py stdio <portcullis-binary> <config>
    python_client.py http <url>                  # e.g. http://127.0.0.1:PORT/mcp

Each run exercises the demo profile (examples/demo/portcullis.toml) twice:

  * legacy: the low-level API exactly as most deployed clients use it:
    `stdio_client` / `streamable_http_client` + `ClientSession.initialize()`
    (the 2025-era initialize handshake);
  * auto:   the SDK's high-level `mcp.Client` with mode="auto", which probes
    `server/discover` (2026-07-28) and falls back to initialize.

Prints one line per check; exits non-zero with a clear message on the first
failure.
"""

from __future__ import annotations

import sys
import traceback
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

import anyio
from mcp import Client, ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

EXPECTED_TOOLS = {
    "list_directory", "read_file", "search_files", "file_info",
    "get_top_chatters", "query", "list_tables", "describe_table",
}
EXPECTED_PROMPTS = {"security_review", "performance_review", "code_review"}
RULES_URI = "config://review-rules"
README_URI = "file:///workspace/README.md"
# Generous: the first stdio spawn of a debug build can be slow on a busy machine.
TIMEOUT_SECS = 60


class CheckFailed(Exception):
    pass


def ok(flavour: str, what: str) -> None:
    print(f"ok   [{flavour}] {what}", flush=True)


def check(cond: bool, flavour: str, what: str, detail: Any = "") -> None:
    if not cond:
        raise CheckFailed(f"[{flavour}] {what}: {detail}")
    ok(flavour, what)


def text_of(content: list[Any]) -> str:
    """Concatenate the text blocks of a tool result / prompt message list."""
    parts = []
    for block in content:
        text = getattr(block, "text", None)
        if text is not None:
            parts.append(text)
    return "\n".join(parts)


async def exercise(api: Any, flavour: str) -> None:
    """Run every check against `api`: a ClientSession or an mcp.Client (same method names)."""
    tools = await api.list_tools()
    names = {t.name for t in tools.tools}
    check(EXPECTED_TOOLS <= names, flavour, "tools/list has the files and SQL tools", sorted(names))
    missing_schema = [t.name for t in tools.tools if not isinstance(t.input_schema, dict)]
    check(not missing_schema, flavour, "every tool has an inputSchema", missing_schema)

    readme = await api.call_tool("read_file", {"path": "README.md"})
    body = text_of(readme.content)
    check(not readme.is_error, flavour, "read_file README.md is not an error", body[:200])
    check(body.startswith("# shelf"), flavour, 'read_file README.md starts with "# shelf"', repr(body[:80]))

    escape = await api.call_tool("read_file", {"path": "../../Cargo.toml"})
    message = text_of(escape.content)
    check(escape.is_error is True, flavour, "read_file ../../Cargo.toml has isError true", repr(message[:200]))
    check("`..`" in message, flavour, "the escape error mentions `..`", repr(message[:200]))
    check("[workspace]" not in message, flavour, "the escape error leaks no file content", repr(message[:200]))

    resources = await api.list_resources()
    uris = {str(r.uri) for r in resources.resources}
    check(RULES_URI in uris, flavour, f"resources/list has {RULES_URI}", sorted(uris)[:20])

    templates = await api.list_resource_templates()
    template_uris = {t.uri_template for t in templates.resource_templates}
    check(
        template_uris == {"file:///{root}/{+path}"},
        flavour,
        "resources/templates/list has exactly the file:///{root}/{+path} template",
        sorted(template_uris),
    )

    rules = await api.read_resource(RULES_URI)
    check(len(rules.contents) >= 1, flavour, f"resources/read {RULES_URI} returns contents", rules)
    rules_text = getattr(rules.contents[0], "text", "") or ""
    check(bool(rules_text.strip()), flavour, f"{RULES_URI} has text", repr(rules_text[:80]))
    check(str(rules.contents[0].uri) == RULES_URI, flavour, f"{RULES_URI} contents carry its uri", rules.contents[0].uri)

    readme_res = await api.read_resource(README_URI)
    readme_text = getattr(readme_res.contents[0], "text", "") if readme_res.contents else ""
    check(
        (readme_text or "").startswith("# shelf"),
        flavour,
        f'resources/read {README_URI} starts with "# shelf"',
        repr((readme_text or "")[:80]),
    )

    prompts = await api.list_prompts()
    prompt_names = {p.name for p in prompts.prompts}
    check(EXPECTED_PROMPTS <= prompt_names, flavour, "prompts/list has the three review prompts", sorted(prompt_names))
    security = next(p for p in prompts.prompts if p.name == "security_review")
    required = {a.name for a in (security.arguments or []) if a.required}
    check(required == {"code"}, flavour, "security_review requires exactly `code`", required)

    marker = "x = eval(input())  # py-sdk-marker"
    prompt = await api.get_prompt("security_review", {"code": marker})
    prompt_text = "\n".join(text_of([m.content]) for m in prompt.messages)
    check(len(prompt.messages) >= 1, flavour, "prompts/get security_review returns messages", prompt)
    check(marker in prompt_text, flavour, "the rendered prompt contains the code", repr(prompt_text[:200]))


@asynccontextmanager
async def legacy_session(mode: str, target: list[str]) -> AsyncIterator[ClientSession]:
    if mode == "stdio":
        params = StdioServerParameters(command=target[0], args=["serve", "--stdio", "--config", target[1]])
        transport = stdio_client(params)
    else:
        transport = streamable_http_client(target[0])
    async with transport as (read, write):
        async with ClientSession(read, write) as session:
            yield session


async def run_legacy(mode: str, target: list[str]) -> None:
    flavour = f"{mode}/legacy"
    async with legacy_session(mode, target) as session:
        init = await session.initialize()
        check(init.server_info.name == "portcullis-demo", flavour, "initialize: serverInfo.name", init.server_info)
        check(bool(init.protocol_version), flavour, f"initialize: protocol {init.protocol_version}")
        caps = init.capabilities
        check(
            caps.tools is not None and caps.resources is not None and caps.prompts is not None,
            flavour,
            "initialize: tools, resources and prompts capabilities",
            caps,
        )
        await exercise(session, flavour)


async def run_auto(mode: str, target: list[str]) -> None:
    flavour = f"{mode}/auto"
    if mode == "stdio":
        server: Any = StdioServerParameters(command=target[0], args=["serve", "--stdio", "--config", target[1]])
    else:
        server = target[0]
    # cache=None: every call must reach the server, otherwise we test the SDK's cache.
    async with Client(server, mode="auto", cache=None, raise_exceptions=True) as client:
        ok(flavour, f"connected, negotiated protocol {client.protocol_version}")
        await exercise(client, flavour)


async def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] not in ("stdio", "http"):
        print(__doc__, file=sys.stderr)
        return 2
    mode = argv[1]
    target = argv[2:]
    if (mode == "stdio" and len(target) != 2) or (mode == "http" and len(target) != 1):
        print(__doc__, file=sys.stderr)
        return 2

    for name, runner in (("legacy", run_legacy), ("auto", run_auto)):
        try:
            with anyio.fail_after(TIMEOUT_SECS):
                await runner(mode, target)
        except CheckFailed as e:
            print(f"FAIL {e}", file=sys.stderr, flush=True)
            return 1
        except BaseException as e:  # noqa: BLE001 - report anything, incl. ExceptionGroups / timeouts
            print(f"FAIL [{mode}/{name}] unexpected {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            traceback.print_exception(e, file=sys.stderr)
            return 1
    print(f"all checks passed ({mode})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(anyio.run(main, sys.argv))
