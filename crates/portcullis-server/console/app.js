// The Portcullis console: a page that speaks MCP 2026-07-28 to this server's endpoint with
// the signed-in credential, plus the small approvals/audit API. No framework, no build
// step, nothing from elsewhere; every text from the server goes into the page as text,
// never as markup.
'use strict';

const PROTOCOL = '2026-07-28';
const state = {
  token: null,
  session: null,
  nextId: 1,
  tools: [],
  current: null,
  running: null,
  watch: null,
  approvalTimer: null,
};

const $ = (selector) => document.querySelector(selector);

// A DOM element with attributes (properties) and children (nodes or text).
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (key in node && typeof value !== 'string') node[key] = value;
    else node.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function clear(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
}

function toast(text) {
  const box = $('#toast');
  box.textContent = text;
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.hidden = true; }, 2500);
}

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (state.token) h.Authorization = 'Bearer ' + state.token;
  return h;
}

// The console's JSON API.
async function api(path, options) {
  const opts = options || {};
  const response = await fetch('/console/api/' + path, {
    method: opts.method || 'GET',
    headers: headers(opts.body ? { 'Content-Type': 'application/json' } : {}),
    body: opts.body ? JSON.stringify(opts.body) : undefined,
    credentials: 'omit',
    cache: 'no-store',
  });
  let body = null;
  try { body = await response.json(); } catch (_) { body = null; }
  if (!response.ok) {
    const reason = body && (body.error_description || body.error) ? (body.error_description || body.error) : response.status + ' ' + response.statusText;
    const error = new Error(reason);
    error.status = response.status;
    throw error;
  }
  return body;
}

// One MCP request (2026-07-28, stateless). `onMessage` receives the notifications the
// server sends before its answer (progress, log messages); `signal` aborts (cancels) it.
async function mcp(method, params, options) {
  const opts = options || {};
  const id = state.nextId++;
  const body = {
    jsonrpc: '2.0',
    id,
    method,
    params: Object.assign({}, params || {}, {
      _meta: Object.assign({
        'io.modelcontextprotocol/protocolVersion': PROTOCOL,
        'io.modelcontextprotocol/clientInfo': { name: 'portcullis-console', version: '1' },
        'io.modelcontextprotocol/clientCapabilities': {},
      }, opts.meta || {}),
    }),
  };
  const extra = {
    'Content-Type': 'application/json',
    Accept: 'application/json, text/event-stream',
    'MCP-Protocol-Version': PROTOCOL,
    'Mcp-Method': method,
  };
  const name = params && (params.name || params.uri);
  if (typeof name === 'string' && /^[\x20-\x7e]*$/.test(name)) extra['Mcp-Name'] = name;
  const response = await fetch(state.session.mcp_path, {
    method: 'POST',
    headers: headers(extra),
    body: JSON.stringify(body),
    signal: opts.signal,
    credentials: 'omit',
    cache: 'no-store',
  });
  const type = response.headers.get('content-type') || '';
  if (type.startsWith('text/event-stream')) {
    return readEvents(response, id, opts.onMessage);
  }
  let message = null;
  try { message = await response.json(); } catch (_) { message = null; }
  if (!message) {
    return { error: { message: 'HTTP ' + response.status + ' ' + response.statusText } };
  }
  if (!message.result && !message.error) {
    return { error: { message: message.error_description || message.error || ('HTTP ' + response.status) } };
  }
  return message;
}

// Reads an SSE response until the answer to `id`, handing every other message on.
async function readEvents(response, id, onMessage) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, '\n');
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = event.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).replace(/^ /, '')).join('\n');
      if (!data) continue;
      let message;
      try { message = JSON.parse(data); } catch (_) { continue; }
      if (message.id === id && (message.result || message.error)) {
        reader.cancel().catch(() => {});
        return message;
      }
      if (onMessage) onMessage(message);
    }
  }
  return { error: { message: 'the stream ended without an answer' } };
}

// ---- sign-in and navigation ------------------------------------------------------------

async function signIn(token) {
  clearPages();
  state.token = token || null;
  try {
    state.session = await api('session');
  } catch (error) {
    state.token = null;
    $('#signin-error').textContent = error.status === 401
      ? 'Not signed in: the server did not accept this credential.'
      : 'Could not sign in: ' + error.message;
    return;
  }
  $('#signin-error').textContent = '';
  $('#token').value = '';
  $('#nav').hidden = false;
  $('#sign-out').hidden = false;
  $('#who').textContent = 'signed in as ' + state.session.principal;
  $('#server-name').textContent = state.session.server.name + ' ' + state.session.server.version;
  for (const link of document.querySelectorAll('.approver-only')) link.hidden = !state.session.approver;
  refreshPendingCount();
  clearInterval(state.approvalTimer);
  state.approvalTimer = setInterval(refreshPendingCount, 2000);
  go(location.hash.slice(1) || 'overview');
}

// Empties every page, so the next person to sign in sees nothing of the last one's.
function clearPages() {
  for (const selector of ['#overview-facts', '#ready-table tbody', '#tool-list', '#resource-list', '#template-list',
    '#prompt-list', '#approval-list', '#audit-table tbody', '#withheld-table tbody']) clear($(selector));
  clear($('#tool-detail'), el('p', { class: 'muted' }, 'Choose a tool.'));
  clear($('#resource-detail'), el('p', { class: 'muted' }, 'Choose a resource or a template.'));
  clear($('#prompt-detail'), el('p', { class: 'muted' }, 'Choose a prompt.'));
  state.tools = [];
  state.current = null;
  $('#pending-count').hidden = true;
}

function signOut() {
  if (state.running) state.running.abort();
  clearPages();
  state.token = null;
  state.session = null;
  clearInterval(state.approvalTimer);
  stopWatch();
  $('#nav').hidden = true;
  $('#sign-out').hidden = true;
  $('#who').textContent = '';
  show('signin');
}

function show(page) {
  for (const section of document.querySelectorAll('.page')) section.hidden = section.id !== 'page-' + page;
  for (const link of document.querySelectorAll('#nav a')) link.classList.toggle('active', link.dataset.page === page);
}

const pages = {
  overview: loadOverview,
  tools: loadTools,
  resources: loadResources,
  prompts: loadPrompts,
  approvals: loadApprovals,
  audit: loadAudit,
  withheld: loadWithheld,
};

function go(page) {
  if (!state.session) { show('signin'); return; }
  if (!Object.prototype.hasOwnProperty.call(pages, page)) page = 'overview';
  if (page !== 'resources') stopWatch();
  show(page);
  pages[page]().catch((error) => {
    // A refused load shows nothing rather than what was there before.
    if (page === 'audit') clear($('#audit-table tbody'));
    if (page === 'withheld') clear($('#withheld-table tbody'));
    if (page === 'approvals') clear($('#approval-list'));
    toast(error.message);
  });
}

// ---- overview --------------------------------------------------------------------------

async function loadOverview() {
  const facts = $('#overview-facts');
  const [tools, resources, prompts, ready] = await Promise.all([
    mcp('tools/list', {}),
    mcp('resources/list', {}),
    mcp('prompts/list', {}),
    fetch('/readyz', { cache: 'no-store', credentials: 'omit' }).then((r) => r.json()).catch(() => null),
  ]);
  const count = (m, key) => (m.result && m.result[key] ? m.result[key].length : 0);
  clear(facts,
    el('dt', {}, 'Server'), el('dd', {}, state.session.server.name + ' ' + state.session.server.version),
    el('dt', {}, 'Signed in as'), el('dd', {}, state.session.principal + (state.session.approver ? ' (approver)' : '')),
    el('dt', {}, 'Tools'), el('dd', {}, String(count(tools, 'tools'))),
    el('dt', {}, 'Resources'), el('dd', {}, String(count(resources, 'resources'))),
    el('dt', {}, 'Prompts'), el('dd', {}, String(count(prompts, 'prompts'))),
    el('dt', {}, 'Status'), el('dd', { class: ready && ready.status === 'ready' ? 'ok' : 'error' }, ready ? ready.status : 'unknown'),
    el('dt', {}, 'Audit log'), el('dd', {}, state.session.audit ? 'on' : 'off'));
  const rows = [];
  if (ready && ready.checks) {
    for (const [name, value] of Object.entries(ready.checks)) {
      rows.push(el('tr', {}, el('td', {}, name), el('td', { class: value === 'ok' ? 'ok' : 'error' }, String(value))));
    }
  }
  if (!rows.length) rows.push(el('tr', {}, el('td', { colspan: '2', class: 'muted' }, 'no sources to check')));
  clear($('#ready-table tbody'), rows);
}

// ---- tools -----------------------------------------------------------------------------

async function loadTools() {
  const answer = await mcp('tools/list', {});
  if (answer.error) throw new Error(answer.error.message);
  state.tools = answer.result.tools || [];
  const list = $('#tool-list');
  clear(list, state.tools.map((tool) => el('li', {
    dataset: { tool: tool.name },
    onclick: () => selectTool(tool.name),
  }, tool.title || tool.name, el('small', {}, tool.name))));
  if (!state.tools.length) clear(list, el('li', { class: 'muted' }, 'no tools for this principal'));
}

function selectTool(name) {
  const tool = state.tools.find((t) => t.name === name);
  if (!tool) return;
  state.current = tool;
  for (const li of document.querySelectorAll('#tool-list li')) li.classList.toggle('active', li.dataset.tool === name);
  const schema = tool.inputSchema || { type: 'object', properties: {} };
  const form = el('form', { id: 'tool-form', novalidate: true, autocomplete: 'off' });
  form.append(...fieldsFor(schema, []));
  form.addEventListener('submit', (event) => { event.preventDefault(); callTool(tool); });
  const annotations = tool.annotations || {};
  const hints = [];
  if (annotations.readOnlyHint) hints.push('read-only');
  if (annotations.destructiveHint) hints.push('destructive');
  clear($('#tool-detail'),
    el('h2', {}, tool.title || tool.name),
    el('p', { class: 'muted' }, tool.name + (hints.length ? ' · ' + hints.join(', ') : '')),
    tool.description ? el('p', {}, tool.description) : null,
    form,
    el('div', { class: 'row' },
      el('button', { type: 'submit', id: 'call-button', form: 'tool-form' }, 'Call'),
      el('button', { type: 'button', id: 'cancel-button', class: 'danger', disabled: true, onclick: cancelCall }, 'Cancel'),
      el('button', { type: 'button', class: 'secondary', id: 'copy-curl', onclick: () => copy('curl') }, 'Copy as curl'),
      el('button', { type: 'button', class: 'secondary', id: 'copy-cli', onclick: () => copy('cli') }, 'Copy as portcullis call')),
    el('pre', { id: 'copied', hidden: true }),
    el('progress', { id: 'call-progress', hidden: true }),
    el('div', { id: 'call-log', class: 'log', hidden: true }),
    el('p', { id: 'call-status', class: 'muted' }),
    el('div', { id: 'call-result' }));
  form.append(el('button', { type: 'submit', hidden: true }));
}

// Form fields for an object schema; `prefix` is the list of property names down to it.
function fieldsFor(schema, prefix) {
  const required = new Set(schema.required || []);
  const out = [];
  for (const [name, prop] of Object.entries(schema.properties || {})) {
    out.push(field(prefix.concat([name]), name, prop || {}, required.has(name)));
  }
  return out;
}

function typeOf(prop) {
  if (Array.isArray(prop.type)) return prop.type.find((t) => t !== 'null') || 'string';
  if (prop.type) return prop.type;
  if (prop.enum) return 'string';
  if (prop.properties) return 'object';
  return 'json';
}

let fieldCount = 0;

function field(segments, name, prop, required) {
  const type = typeOf(prop);
  // As the server's validation names it (`a.b`), for its errors; the segments themselves
  // go into the arguments.
  const path = segments.join('.');
  const id = segments.length === 1 && /^[a-zA-Z0-9_-]+$/.test(name) ? 'f-' + name : 'f-' + (++fieldCount);
  const help = [];
  if (prop.description) help.push(prop.description);
  if (prop.minimum !== undefined) help.push('min ' + prop.minimum);
  if (prop.maximum !== undefined) help.push('max ' + prop.maximum);
  if (prop.format) help.push('format ' + prop.format);
  const wrap = el('div', { class: 'field', dataset: { path, type } });
  if (type === 'object' && prop.properties) {
    const set = el('fieldset', {}, el('legend', {}, name + (required ? ' *' : '')));
    set.append(...fieldsFor(prop, segments));
    wrap.append(set, el('p', { class: 'field-error', dataset: { errorFor: path } }));
    return wrap;
  }
  let input;
  if (prop.enum) {
    input = el('select', { id }, required ? null : el('option', { value: '' }, '—'),
      prop.enum.map((v) => el('option', { value: JSON.stringify(v) }, String(v))));
    input.dataset.kind = 'enum';
  } else if (type === 'boolean') {
    input = el('input', { id, type: 'checkbox' });
    input.dataset.kind = 'boolean';
  } else if (type === 'integer' || type === 'number') {
    input = el('input', { id, type: 'text', inputmode: 'decimal', placeholder: type });
    input.dataset.kind = type;
  } else if (type === 'array' || type === 'object' || type === 'json') {
    const items = prop.items && typeOf(prop.items);
    const simple = type === 'array' && (items === 'string' || items === 'integer' || items === 'number');
    input = el(simple ? 'input' : 'textarea', { id, rows: 3, placeholder: simple ? 'one, two, three' : 'JSON' });
    input.dataset.kind = simple ? 'list-' + items : 'json';
  } else {
    const inputType = prop.format === 'date' ? 'date' : prop.format === 'email' ? 'email' : prop.format === 'date-time' ? 'datetime-local' : (prop.writeOnly ? 'password' : 'text');
    input = el('input', { id, type: inputType });
    input.dataset.kind = prop.format === 'date-time' ? 'date-time' : 'string';
  }
  if (prop.default !== undefined && input.dataset.kind !== 'boolean') {
    input.value = typeof prop.default === 'string' ? prop.default : (input.tagName === 'SELECT' ? JSON.stringify(prop.default) : JSON.stringify(prop.default));
  } else if (prop.default === true) {
    input.checked = true;
  }
  input.dataset.path = path;
  input.dataset.segments = JSON.stringify(segments);
  input.dataset.required = required ? '1' : '';
  wrap.append(...[
    el('label', { for: id }, name, required ? el('span', { class: 'req' }, ' *') : null),
    help.length ? el('p', { class: 'field-help' }, help.join(' · ')) : null,
    input,
    el('p', { class: 'field-error', dataset: { errorFor: path } })].filter(Boolean));
  return wrap;
}

// The arguments the form holds. Values the page cannot read as their type are sent as
// typed, so the server's validation (the one that counts) names the field.
function readForm() {
  // Objects without a prototype: a property named `__proto__` is a property like any other.
  const args = Object.create(null);
  for (const input of document.querySelectorAll('#tool-form [data-segments]')) {
    if (!('kind' in input.dataset)) continue;
    const path = JSON.parse(input.dataset.segments);
    const kind = input.dataset.kind;
    let value;
    const text = input.value;
    if (kind === 'boolean') value = input.checked;
    else if (text === '' && kind !== 'boolean') continue;
    else if (kind === 'integer' || kind === 'number') value = /^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(text.trim()) ? Number(text) : text;
    else if (kind === 'enum') value = JSON.parse(text);
    else if (kind === 'json') { try { value = JSON.parse(text); } catch (_) { value = text; } }
    else if (kind.startsWith('list-')) {
      value = text.split(',').map((s) => s.trim()).filter((s) => s !== '');
      if (kind !== 'list-string') value = value.map((s) => (/^-?\d+(\.\d+)?$/.test(s) ? Number(s) : s));
    } else if (kind === 'date-time') value = text.length === 16 ? text + ':00Z' : text;
    else value = text;
    let target = args;
    for (const part of path.slice(0, -1)) {
      if (!Object.prototype.hasOwnProperty.call(target, part)) target[part] = Object.create(null);
      target = target[part];
    }
    target[path[path.length - 1]] = value;
  }
  return args;
}

function showFieldErrors(text) {
  for (const p of document.querySelectorAll('#tool-form .field-error')) p.textContent = '';
  for (const input of document.querySelectorAll('#tool-form .invalid')) input.classList.remove('invalid');
  let shown = 0;
  for (const line of text.split('\n')) {
    const match = /^- `([^`]+)`: (.*)$/.exec(line);
    if (!match) continue;
    const target = [...document.querySelectorAll('#tool-form .field-error')].find((p) => p.dataset.errorFor === match[1]);
    if (!target) continue;
    target.textContent = match[2];
    const input = [...document.querySelectorAll('#tool-form [data-kind]')].find((i) => i.dataset.path === match[1]);
    if (input) input.classList.add('invalid');
    shown++;
  }
  return shown;
}

async function callTool(tool) {
  const args = readForm();
  const status = $('#call-status');
  const log = $('#call-log');
  const progress = $('#call-progress');
  const result = $('#call-result');
  showFieldErrors('');
  clear(result);
  clear(log);
  log.hidden = true;
  progress.hidden = false;
  progress.removeAttribute('value');
  status.textContent = 'running…';
  status.className = 'muted';
  const controller = new AbortController();
  state.running = controller;
  $('#call-button').disabled = true;
  $('#cancel-button').disabled = false;
  const token = 'console-' + Date.now();
  try {
    const answer = await mcp('tools/call', { name: tool.name, arguments: args }, {
      signal: controller.signal,
      meta: { progressToken: token, 'io.modelcontextprotocol/logLevel': 'info' },
      onMessage: (message) => {
        if (message.method === 'notifications/progress') {
          const p = message.params || {};
          if (p.total) { progress.max = p.total; progress.value = p.progress; } else { progress.value = p.progress; }
          status.textContent = 'running… ' + (p.message || '') + ' (' + p.progress + (p.total ? ' / ' + p.total : '') + ')';
        } else if (message.method === 'notifications/message') {
          const p = message.params || {};
          log.hidden = false;
          log.append(el('div', {}, '[' + (p.level || 'info') + '] ' + (typeof p.data === 'string' ? p.data : JSON.stringify(p.data))));
        }
      },
    });
    if (answer.error) {
      status.textContent = 'error: ' + answer.error.message;
      status.className = 'error';
    } else if (answer.result && answer.result.resultType === 'input_required') {
      status.textContent = 'this call needs input the console cannot give (approval by elicitation): use approval = "console" or a client with elicitation';
      status.className = 'error';
    } else {
      const res = answer.result || {};
      const text = (res.content || []).filter((c) => c.type === 'text').map((c) => c.text).join('\n');
      const fields = res.isError ? showFieldErrors(text) : 0;
      status.textContent = res.isError ? (fields ? 'invalid arguments: see the fields' : 'the tool answered with an error') : 'done';
      status.className = res.isError ? 'error' : 'ok';
      renderResult(result, res);
    }
  } catch (error) {
    status.textContent = error.name === 'AbortError' ? 'cancelled' : 'failed: ' + error.message;
    status.className = 'error';
  } finally {
    state.running = null;
    progress.hidden = true;
    $('#call-button').disabled = false;
    $('#cancel-button').disabled = true;
  }
}

function cancelCall() {
  if (state.running) state.running.abort();
}

function copy(kind) {
  const tool = state.current;
  if (!tool) return;
  // Secret parameters (`writeOnly`) never go onto a command line: a placeholder instead.
  const values = readForm();
  for (const [name, prop] of Object.entries((tool.inputSchema || {}).properties || {})) {
    if (prop && prop.writeOnly && Object.prototype.hasOwnProperty.call(values, name)) values[name] = '<secret>';
  }
  const args = JSON.stringify(values);
  const quote = (s) => "'" + s.replace(/'/g, "'\\''") + "'";
  let text;
  if (kind === 'curl') {
    const body = JSON.stringify({
      jsonrpc: '2.0', id: 1, method: 'tools/call',
      params: { name: tool.name, arguments: JSON.parse(args), _meta: { 'io.modelcontextprotocol/protocolVersion': PROTOCOL, 'io.modelcontextprotocol/clientInfo': { name: 'curl', version: '1' }, 'io.modelcontextprotocol/clientCapabilities': {} } },
    });
    text = 'curl -sS ' + quote(location.origin + state.session.mcp_path) +
      " -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream'" +
      " -H 'MCP-Protocol-Version: " + PROTOCOL + "' -H 'Mcp-Method: tools/call' -H " + quote('Mcp-Name: ' + tool.name) +
      (state.token ? ' -H "Authorization: Bearer $PORTCULLIS_TOKEN"' : '') + ' -d ' + quote(body);
  } else {
    text = 'portcullis call --config portcullis.toml ' + quote(tool.name) + ' --args ' + quote(args) +
      (state.session.principal.startsWith('key:') ? ' --principal ' + quote(state.session.principal) : '');
  }
  const shown = $('#copied');
  shown.hidden = false;
  shown.textContent = text;
  if (navigator.clipboard) navigator.clipboard.writeText(text).then(() => toast('copied'), () => toast('shown below; copy it from there'));
}

// ---- results and contents --------------------------------------------------------------

function renderResult(target, result) {
  const parts = [];
  for (const block of result.content || []) parts.push(renderBlock(block));
  if (result.structuredContent !== undefined) {
    parts.push(el('h3', {}, 'Structured content'), el('pre', { class: 'json' }, JSON.stringify(result.structuredContent, null, 2)));
  }
  clear(target, parts);
}

function renderBlock(block) {
  switch (block.type) {
    case 'text': return renderText(block.text, null);
    case 'image': return el('img', { class: 'result-image', alt: 'image result', src: 'data:' + safeMime(block.mimeType, 'image/') + ';base64,' + block.data });
    case 'audio': return el('p', { class: 'muted' }, 'audio (' + block.mimeType + '), ' + (block.data || '').length + ' base64 characters');
    case 'resource': return renderContents(block.resource);
    case 'resource_link': return el('p', {}, 'resource link: ', el('code', {}, block.uri), block.name ? ' (' + block.name + ')' : '');
    default: return el('pre', {}, JSON.stringify(block, null, 2));
  }
}

function safeMime(mime, prefix) {
  return typeof mime === 'string' && mime.startsWith(prefix) && /^[a-z0-9.+/-]+$/i.test(mime) ? mime : prefix + 'png';
}

function renderContents(contents) {
  const head = el('p', { class: 'muted' }, contents.uri + (contents.mimeType ? ' · ' + contents.mimeType : ''));
  if (contents.text !== undefined) return el('div', { class: 'contents' }, head, renderText(contents.text, contents.mimeType));
  if (contents.blob !== undefined && (contents.mimeType || '').startsWith('image/')) {
    return el('div', { class: 'contents' }, head, el('img', { class: 'result-image', alt: contents.uri, src: 'data:' + safeMime(contents.mimeType, 'image/') + ';base64,' + contents.blob }));
  }
  return el('div', { class: 'contents' }, head, el('p', { class: 'muted' }, 'binary, ' + (contents.blob || '').length + ' base64 characters'));
}

function renderText(text, mime) {
  if (mime === 'application/json' || (!mime && /^\s*[[{]/.test(text))) {
    try { return el('pre', { class: 'json' }, JSON.stringify(JSON.parse(text), null, 2)); } catch (_) { /* not JSON */ }
  }
  if (mime === 'text/markdown') return markdown(text);
  return el('pre', {}, text);
}

// A small, safe markdown view: headings, lists, code blocks, paragraphs, `code` and
// **bold**; everything as text nodes.
function markdown(text) {
  const root = el('div', { class: 'md' });
  let list = null;
  let code = null;
  const inline = (line) => {
    const out = [];
    const re = /(`[^`]+`|\*\*[^*]+\*\*)/g;
    let last = 0;
    let m;
    while ((m = re.exec(line))) {
      out.push(line.slice(last, m.index));
      out.push(m[0].startsWith('`') ? el('code', {}, m[0].slice(1, -1)) : el('strong', {}, m[0].slice(2, -2)));
      last = m.index + m[0].length;
    }
    out.push(line.slice(last));
    return out;
  };
  for (const line of text.split('\n')) {
    if (line.startsWith('```')) {
      if (code) { root.append(code); code = null; } else { code = el('pre', {}); }
      continue;
    }
    if (code) { code.append(line + '\n'); continue; }
    const heading = /^(#{1,3})\s+(.*)$/.exec(line);
    const item = /^\s*[-*]\s+(.*)$/.exec(line);
    if (item) {
      if (!list) { list = el('ul', {}); root.append(list); }
      list.append(el('li', {}, inline(item[1])));
      continue;
    }
    list = null;
    if (heading) root.append(el('h' + (heading[1].length + 1), {}, inline(heading[2])));
    else if (line.trim()) root.append(el('p', {}, inline(line)));
  }
  if (code) root.append(code);
  return root;
}

// ---- resources -------------------------------------------------------------------------

async function loadResources() {
  const [resources, templates] = await Promise.all([mcp('resources/list', {}), mcp('resources/templates/list', {})]);
  const items = (resources.result && resources.result.resources) || [];
  const temps = (templates.result && templates.result.resourceTemplates) || [];
  clear($('#resource-list'), items.length ? items.map((r) => el('li', { dataset: { uri: r.uri }, onclick: () => readResource(r.uri) }, r.title || r.name || r.uri, el('small', {}, r.uri))) : el('li', { class: 'muted' }, 'none'));
  clear($('#template-list'), temps.length ? temps.map((t) => el('li', { dataset: { template: t.uriTemplate }, onclick: () => openTemplate(t) }, t.title || t.name, el('small', {}, t.uriTemplate))) : el('li', { class: 'muted' }, 'none'));
}

function openTemplate(template) {
  const input = el('input', { id: 'template-uri', value: template.uriTemplate });
  clear($('#resource-detail'),
    el('h2', {}, template.title || template.name),
    template.description ? el('p', {}, template.description) : null,
    el('label', { for: 'template-uri' }, 'URI (fill in the template)'),
    input,
    el('div', { class: 'row' }, el('button', { type: 'button', onclick: () => readResource(input.value) }, 'Read')));
}

async function readResource(uri) {
  stopWatch();
  for (const li of document.querySelectorAll('#resource-list li')) li.classList.toggle('active', li.dataset.uri === uri);
  const detail = $('#resource-detail');
  const body = el('div', { id: 'resource-contents' });
  const status = el('p', { id: 'watch-status', class: 'muted' });
  clear(detail,
    el('h2', {}, uri),
    el('div', { class: 'row' },
      el('button', { type: 'button', id: 'watch-button', onclick: () => watch(uri) }, 'Watch for changes'),
      el('button', { type: 'button', class: 'secondary', onclick: () => readResource(uri) }, 'Read again')),
    status,
    body);
  await fillContents(uri, body);
}

async function fillContents(uri, body) {
  const answer = await mcp('resources/read', { uri });
  if (answer.error) {
    clear(body, el('p', { class: 'error' }, answer.error.message));
    return;
  }
  clear(body, (answer.result.contents || []).map(renderContents));
}

// Follows `uri` on a `subscriptions/listen` stream; each update reads it again.
async function watch(uri) {
  stopWatch();
  const controller = new AbortController();
  state.watch = controller;
  const status = $('#watch-status');
  status.textContent = 'watching for changes…';
  $('#watch-button').disabled = true;
  let updates = 0;
  try {
    await mcp('subscriptions/listen', { notifications: { resourceSubscriptions: [uri] } }, {
      signal: controller.signal,
      onMessage: (message) => {
        if (message.method === 'notifications/resources/updated' && message.params && message.params.uri === uri) {
          updates++;
          status.textContent = 'updated ' + updates + ' time(s), last at ' + new Date().toLocaleTimeString();
          fillContents(uri, $('#resource-contents'));
        }
      },
    });
    if (state.watch === controller) status.textContent = 'the watch ended';
  } catch (error) {
    if (error.name !== 'AbortError') status.textContent = 'the watch failed: ' + error.message;
  }
}

function stopWatch() {
  if (state.watch) { state.watch.abort(); state.watch = null; }
}

// ---- prompts ---------------------------------------------------------------------------

async function loadPrompts() {
  const answer = await mcp('prompts/list', {});
  const prompts = (answer.result && answer.result.prompts) || [];
  clear($('#prompt-list'), prompts.length ? prompts.map((p) => el('li', { dataset: { prompt: p.name }, onclick: () => openPrompt(p) }, p.title || p.name, el('small', {}, p.description || ''))) : el('li', { class: 'muted' }, 'none'));
}

function openPrompt(prompt) {
  for (const li of document.querySelectorAll('#prompt-list li')) li.classList.toggle('active', li.dataset.prompt === prompt.name);
  const inputs = (prompt.arguments || []).map((arg) => {
    const id = 'p-' + arg.name.replace(/[^a-zA-Z0-9_-]/g, '_');
    const list = el('datalist', { id: id + '-options' });
    const input = el('input', { id, list: id + '-options', dataset: { arg: arg.name } });
    input.addEventListener('input', () => complete(prompt.name, arg.name, input.value, list));
    return el('div', {}, el('label', { for: id }, arg.name, arg.required ? el('span', { class: 'req' }, ' *') : null),
      arg.description ? el('p', { class: 'field-help' }, arg.description) : null, input, list);
  });
  const out = el('div', { id: 'prompt-messages' });
  clear($('#prompt-detail'),
    el('h2', {}, prompt.title || prompt.name),
    prompt.description ? el('p', {}, prompt.description) : null,
    inputs,
    el('div', { class: 'row' }, el('button', { type: 'button', id: 'get-prompt', onclick: () => getPrompt(prompt) }, 'Get')),
    out);
}

async function complete(prompt, argument, value, list) {
  const answer = await mcp('completion/complete', { ref: { type: 'ref/prompt', name: prompt }, argument: { name: argument, value } });
  const values = (answer.result && answer.result.completion && answer.result.completion.values) || [];
  clear(list, values.map((v) => el('option', { value: v })));
}

async function getPrompt(prompt) {
  const args = {};
  for (const input of document.querySelectorAll('#prompt-detail [data-arg]')) if (input.value !== '') args[input.dataset.arg] = input.value;
  const answer = await mcp('prompts/get', { name: prompt.name, arguments: args });
  const out = $('#prompt-messages');
  if (answer.error) { clear(out, el('p', { class: 'error' }, answer.error.message)); return; }
  clear(out, (answer.result.messages || []).map((m) => el('div', { class: 'card' }, el('strong', {}, m.role), renderBlock(m.content))));
}

// ---- approvals, audit, withheld --------------------------------------------------------

async function refreshPendingCount() {
  if (!state.session) return;
  try {
    const body = await api('approvals');
    const mine = body.approvals.filter((a) => a.may_decide && a.state === 'pending').length;
    const badge = $('#pending-count');
    badge.hidden = mine === 0;
    badge.textContent = String(mine);
    if (!$('#page-approvals').hidden) renderApprovals(body.approvals);
  } catch (_) { /* shown when the page is opened */ }
}

async function loadApprovals() {
  const body = await api('approvals');
  renderApprovals(body.approvals);
}

function renderApprovals(approvals) {
  const list = $('#approval-list');
  if (!approvals.length) { clear(list, el('p', { class: 'muted' }, 'Nothing is waiting for approval.')); return; }
  clear(list, approvals.map((a) => el('div', { class: 'card approval', dataset: { id: a.id } },
    el('p', {}, el('strong', {}, a.tool), ' called by ', el('code', {}, a.principal), ' · ', a.state),
    el('p', {}, 'Arguments: ', el('code', {}, a.summary)),
    el('details', { class: 'arguments' }, el('summary', {}, 'All arguments as they will run'), el('pre', {}, a.arguments)),
    el('p', { class: 'muted' }, 'Digest ', el('code', { class: 'digest' }, a.digest)),
    el('p', { class: 'muted' }, 'Requested ' + a.requested_at + ', expires ' + a.expires_at),
    a.may_decide && a.state === 'pending'
      ? el('div', { class: 'row' },
        el('button', { type: 'button', class: 'approve', onclick: () => decide(a.id, 'approve') }, 'Approve'),
        el('button', { type: 'button', class: 'danger deny', onclick: () => decide(a.id, 'deny') }, 'Deny'))
      : el('p', { class: 'muted' }, a.may_decide ? '' : 'waiting for an approver'))));
}

async function decide(id, decision) {
  try {
    const result = await api('approvals/' + encodeURIComponent(id), { method: 'POST', body: { decision } });
    toast(decision === 'approve' ? 'approved' : 'denied');
    void result;
  } catch (error) {
    toast(error.message);
  }
  loadApprovals().catch((error) => toast(error.message));
  refreshPendingCount();
}

async function loadAudit() {
  const query = new URLSearchParams();
  const principal = $('#audit-principal').value;
  const item = $('#audit-item').value;
  const decision = $('#audit-decision').value;
  if (principal) query.set('principal', principal);
  if (item) query.set('item', item);
  if (decision) query.set('decision', decision);
  query.set('limit', '200');
  const body = await api('audit?' + query.toString());
  const rows = body.records.map((r) => el('tr', {},
    el('td', {}, r.time), el('td', {}, r.principal), el('td', {}, r.method), el('td', {}, r.item),
    el('td', { class: r.decision === 'refused' || r.decision === 'denied' ? 'error' : '' }, r.decision), el('td', {}, r.outcome)));
  if (!body.enabled) rows.push(el('tr', {}, el('td', { colspan: '6', class: 'muted' }, 'the audit log is off ([audit] is not configured)')));
  else if (!rows.length) rows.push(el('tr', {}, el('td', { colspan: '6', class: 'muted' }, 'no records match')));
  clear($('#audit-table tbody'), rows);
}

async function loadWithheld() {
  const body = await api('withheld');
  const rows = body.withheld.map((w) => el('tr', {}, el('td', {}, w.kind), el('td', {}, w.name), el('td', {}, w.source),
    el('td', {}, w.reason, w.diff ? el('pre', { class: 'diff' }, w.diff) : null)));
  if (!rows.length) rows.push(el('tr', {}, el('td', { colspan: '4', class: 'muted' }, 'nothing is withheld')));
  clear($('#withheld-table tbody'), rows);
}

// ---- start -----------------------------------------------------------------------------

document.addEventListener('DOMContentLoaded', () => {
  $('#signin-form').addEventListener('submit', (event) => {
    event.preventDefault();
    signIn($('#token').value.trim());
  });
  $('#signin-local').addEventListener('click', () => signIn(null));
  $('#sign-out').addEventListener('click', signOut);
  $('#audit-filter').addEventListener('submit', (event) => { event.preventDefault(); loadAudit().catch((e) => toast(e.message)); });
  window.addEventListener('hashchange', () => go(location.hash.slice(1)));
  show('signin');
});
