// The official TypeScript MCP SDK v2 server with one tool, `file_info`, for `cargo xtask bench`.
//
// Written to target/bench/ts/server.mjs next to its pinned node_modules (package.json there).
// HTTP: createMcpHandler (2026-07-28 per-request serving, default responseMode 'auto', which
// answers a plain tool call with one JSON body) on node:http via toNodeHandler, behind the
// SDK's localhost Host check. The address is printed on stderr as {"listening": "127.0.0.1:PORT"}.
//
//     node server.mjs --root DIR            # Streamable HTTP on 127.0.0.1, a free port
//     node server.mjs --root DIR --stdio    # stdio (serveStdio)

import { createServer } from 'node:http';
import { stat } from 'node:fs/promises';
import { isAbsolute, join, normalize, sep } from 'node:path';
import { McpServer, createMcpHandler } from '@modelcontextprotocol/server';
import { serveStdio } from '@modelcontextprotocol/server/stdio';
import { localhostHostValidation, toNodeHandler } from '@modelcontextprotocol/node';
import * as z from 'zod';

const args = process.argv.slice(2);
const option = (name) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
};
const root = option('--root');
if (!root) {
    console.error('usage: server.mjs --root DIR [--stdio]');
    process.exit(64);
}

function factory() {
    const server = new McpServer({ name: 'bench-typescript', version: '0.0.0' });
    server.registerTool(
        'file_info',
        {
            description: "Show a file's or directory's type, size and modification time.",
            inputSchema: z.object({ path: z.string().min(1) }),
        },
        async ({ path }) => {
            if (isAbsolute(path) || normalize(path).split(sep)[0] === '..') {
                return { content: [{ type: 'text', text: `\`${path}\` leaves the root` }], isError: true };
            }
            const s = await stat(join(root, path));
            const info = {
                path,
                type: s.isDirectory() ? 'directory' : 'file',
                size: s.size,
                modified: new Date(Math.floor(s.mtimeMs / 1000) * 1000).toISOString().replace('.000Z', 'Z'),
            };
            return { content: [{ type: 'text', text: JSON.stringify(info, null, 2) }], structuredContent: info };
        },
    );
    return server;
}

if (args.includes('--stdio')) {
    serveStdio(factory);
} else {
    const handler = toNodeHandler(createMcpHandler(factory));
    const validateHost = localhostHostValidation();
    const http = createServer((req, res) => {
        if (!validateHost(req, res)) return;
        handler(req, res);
    });
    http.listen(0, '127.0.0.1', () => {
        console.error(JSON.stringify({ listening: `127.0.0.1:${http.address().port}` }));
    });
}
