// Run a plan of MCP requests against Portcullis's legacy HTTP+SSE endpoint with the official
// TypeScript SDK v1 client (`SSEClientTransport`, the transport most desktop clients embed).
//
// Usage: MCP_SDK_DIR=<npm prefix with @modelcontextprotocol/sdk> node ts_sse.mjs PLAN.json SSE_URL
//
// The plan: {"headers": {...}, "steps": [...]}; the headers go on the GET and every POST.
// Steps, run in order in one session:
//   {"list": "tools" | "resources", "contains": [...]}
//   {"tool": NAME, "arguments": {...}, "contains": [...]}      a result, not an error
//   {"resource": URI, "contains": [...]}
//   {"tool" | "resource": ..., "refused": TEXT}                 the request must fail, its
//                                                                error naming TEXT
//   {"tool": ..., "code": N}                                     a JSON-RPC error with code N
// Prints one line per step; exits non-zero on the first failure, "all checks passed" at the end.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const sdk = createRequire(join(process.env.MCP_SDK_DIR, 'package.json'));
const load = (name) => import(pathToFileURL(sdk.resolve(`@modelcontextprotocol/sdk/${name}`)).href);
const { Client } = await load('client/index.js');
const { SSEClientTransport } = await load('client/sse.js');

const [planFile, url] = process.argv.slice(2);
const plan = JSON.parse(readFileSync(planFile, 'utf8'));
const headers = plan.headers ?? {};

function textOf(result) {
  if (result.content) {
    return result.content.map((c) => c.text ?? '').join('\n') + JSON.stringify(result.structuredContent ?? '');
  }
  if (result.contents) {
    return result.contents.map((c) => c.text ?? '').join('\n');
  }
  return JSON.stringify(result);
}

function expectAll(what, text, needles = []) {
  for (const needle of needles) {
    if (!text.includes(needle)) {
      throw new Error(`${what}: expected ${JSON.stringify(needle)} in ${JSON.stringify(text.slice(0, 600))}`);
    }
  }
}

async function run(client, step) {
  const what = step.tool ? `tools/call ${step.tool}` : step.resource ? `resources/read ${step.resource}` : `${step.list}/list`;
  const send = () => {
    if (step.tool) return client.callTool({ name: step.tool, arguments: step.arguments ?? {} });
    if (step.resource) return client.readResource({ uri: step.resource });
    if (step.list === 'tools') return client.listTools();
    return client.listResources();
  };
  if (step.refused !== undefined || step.code !== undefined) {
    let result;
    try {
      result = await send();
    } catch (error) {
      const message = String(error?.message ?? error);
      if (step.code !== undefined && error?.code !== step.code) {
        throw new Error(`${what}: expected error code ${step.code}, got ${error?.code}: ${message}`);
      }
      expectAll(what, message, step.refused === undefined ? [] : [step.refused]);
      console.log(`ok   ${what} refused: ${message.slice(0, 200)}`);
      return;
    }
    throw new Error(`${what}: expected a refusal, got ${JSON.stringify(result).slice(0, 400)}`);
  }
  const result = await send();
  if (result.isError) {
    throw new Error(`${what}: unexpected tool error: ${textOf(result).slice(0, 400)}`);
  }
  const text = step.list === 'tools'
    ? result.tools.map((t) => t.name).join(' ')
    : step.list === 'resources'
      ? result.resources.map((r) => r.uri).join(' ')
      : textOf(result);
  expectAll(what, text, step.contains);
  console.log(`ok   ${what}`);
}

const timer = setTimeout(() => {
  console.error('FAIL timed out');
  process.exit(1);
}, 120_000);

const transport = new SSEClientTransport(new URL(url), {
  requestInit: { headers },
  eventSourceInit: {
    fetch: (input, init) => fetch(input, { ...init, headers: { ...Object.fromEntries(new Headers(init?.headers)), ...headers } }),
  },
});
const client = new Client({ name: 'portcullis-ts-sse-test', version: '1.0.0' });
try {
  await client.connect(transport);
  const server = client.getServerVersion();
  console.log(`ok   initialize: ${server?.name}`);
  for (const step of plan.steps) {
    await run(client, step);
  }
  await client.close();
} catch (error) {
  console.error(`FAIL ${error?.stack ?? error}`);
  process.exit(1);
}
clearTimeout(timer);
console.log('all checks passed (sse)');
