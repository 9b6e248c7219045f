/**
 * Monitor-guided decoding on serving engines, segment by segment (engine/backends/remote).
 *
 * - The constraint: the member regex / grammar accepts exactly ".name" + free text up to the next dot.
 * - vLLM and SGLang: request shapes against recorded exchanges (test/fixtures/remote), replayed through a fake fetch.
 * - llama.cpp's server: node-llama-cpp on the exported tiny fixture, behind a small HTTP adapter speaking the
 *   server's /completion (token prompt, GBNF grammar, stop strings). The monitored identifiers must be legal and
 *   each answered trigger must cost exactly one request.
 * - Errors: unreachable engine, HTTP errors, time-outs, an unreadable vLLM version: one line, RemoteEngineError.
 * - The language server in front of an engine (`mgd serve --backend remote`): completions come from the engine, and
 *   from the local model when the engine is down (one log line).
 */
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memberSegmentConstraint, namesRegex } from '../engine/backends/remote/constraint.js';
import { createRemoteEngine, REMOTE_ENGINES as REMOTE_ENGINE_NAMES, RemoteEngineError, type RemoteEngineName } from '../engine/backends/remote/engines.js';
import { decodeSegmentwise, type SegmentMonitor } from '../engine/backends/remote/segments.js';
import { ensureFixtureModel } from '../engine/model/fixtures.js';
import { exportGguf } from '../engine/model/gguf.js';
import { getCpuLlama, loadNodeLlamaCpp, type LlamaModel, type LlamaContext, type NodeLlamaCpp, type Llama } from '../engine/peers/node-llama-cpp.js';
import { loadTokenizer, type TextTokenizer } from '../engine/tokenizer/tokenizer.js';
import { main } from '../server/cli.js';
import { spawn } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { createMessageConnection, StreamMessageReader, StreamMessageWriter, type MessageConnection } from 'vscode-jsonrpc/node';

const fixtures = path.join(import.meta.dirname, 'fixtures', 'remote');

describe('member constraint', () => {
  it('the names regex is a trie: shared prefixes factored, a name that is a prefix of another optional, $ escaped', () => {
    expect(namesRegex(['length', 'push'])).toBe('(?:length|push)');
    expect(namesRegex(['toFixed', 'toString'])).toBe('to(?:Fixed|String)');
    expect(namesRegex(['len', 'length'])).toBe('len(?:gth)?');
    const re = new RegExp(`^${namesRegex(['$x', 'a$', 'add', 'a'])}$`);
    for (const ok of ['$x', 'a$', 'add', 'a']) expect(re.test(ok), ok).toBe(true);
    for (const bad of ['x', 'ad', '$', 'addd', 'a$x']) expect(re.test(bad), bad).toBe(false);
  });

  it('the segment: ".name", then text without dots, then at most the next dot', () => {
    const re = new RegExp(`^${memberSegmentConstraint(['length', 'len', 'push']).regex}$`);
    for (const ok of ['.length', '.len', '.push(x);\n  return y', '.length.', '.push(a, b)\n}\n', '.len;']) expect(re.test(ok), ok).toBe(true);
    for (const bad of ['.lengthy', '.size', 'length', '.push(a.b)', '.len..', '.le']) expect(re.test(bad), bad).toBe(false);
  });

  it('the GBNF grammar says the same', () => {
    expect(memberSegmentConstraint(['a"b', 'c']).gbnf).toBe(['root ::= "." name tail', 'name ::= "a\\"b" | "c"', 'tail ::= ([^A-Za-z0-9_$.] [^.]*)? "."?'].join('\n'));
  });
});

// ---- recorded exchanges

interface Exchange {
  request: { method: string; path: string; body?: unknown };
  response: { status: number; body: unknown };
}

function replay(file: string) {
  const rec = JSON.parse(fs.readFileSync(path.join(fixtures, file), 'utf8')) as { exchanges: Exchange[]; expect: Record<string, unknown> };
  const pending = [...rec.exchanges];
  const fake = (async (url: string | URL, init?: RequestInit) => {
    const next = pending.shift();
    if (!next) throw new Error(`unexpected request ${String(url)}`);
    const u = new URL(String(url));
    expect({ method: init?.method, path: u.pathname, ...(init?.body ? { body: JSON.parse(String(init.body)) } : {}) }).toEqual(next.request);
    return new Response(JSON.stringify(next.response.body), { status: next.response.status });
  }) as typeof fetch;
  return { fake, expected: rec.expect, pending };
}

/** Members by receiver text (what the oracle would say in these scenarios). */
const members: SegmentMonitor = {
  namesAfterDot: async (text) => (text.endsWith('length') ? ['toFixed', 'toString'] : ['length', 'push']),
};
const charCodes = async (s: string) => [...s].map((c) => c.charCodeAt(0));

describe.each([
  ['vllm', 'vllm-0.12.json', false],
  ['sglang', 'sglang.json', true],
] as const)('%s: request shapes against recorded exchanges', (engine, file, startsAtDot) => {
  it('replays the exchange: prompt ids growing, constraint field, stops, budget', async () => {
    const { fake, expected, pending } = replay(file);
    const remote = createRemoteEngine({ engine: engine as RemoteEngineName, url: 'http://engine.test:8000/', fetch: fake });
    const r = await decodeSegmentwise(remote, { prompt: [1, 2, 3], encode: charCodes, maxTokens: 16, stop: ['\n'], monitor: members, startsAtDot });
    expect(pending).toEqual([]);
    expect({ text: r.text, requests: r.requests, triggers: r.triggers, finish: r.finish }).toEqual(expected);
  });
});

/** Server-Sent Events as the engines write them. */
const sse = (events: unknown[]) => new Response(events.map((e) => `data: ${typeof e === 'string' ? e : JSON.stringify(e)}\n\n`).join(''), { headers: { 'content-type': 'text/event-stream' } });

describe('streaming: recorded event streams, the text streamed as it comes, no dot shown twice', () => {
  const streams: Record<RemoteEngineName, { startsAtDot: boolean; answers: Record<string, unknown>; streams: unknown[][]; text: string }> = {
    llamacpp: {
      startsAtDot: true,
      answers: {},
      streams: [
        [{ content: '.len', stop: false }, { content: 'gth', stop: false }, { content: '.', stop: false }, { content: '', stop: true, stop_type: 'eos', tokens_predicted: 3 }],
        [{ content: '.to', stop: false }, { content: 'Fixed(2)', stop: false }, { content: '', stop: true, stop_type: 'word', stopping_word: '\n', tokens_predicted: 4 }],
      ],
      text: '.length.toFixed(2)',
    },
    vllm: {
      startsAtDot: false,
      answers: { '/version': { version: '0.12.0' }, '/v1/models': { data: [{ id: 'm' }] } },
      streams: [
        [{ choices: [{ text: 'items', finish_reason: null }] }, { choices: [{ text: '', finish_reason: 'stop', stop_reason: '.' }] }, { choices: [], usage: { completion_tokens: 2 } }, '[DONE]'],
        [{ choices: [{ text: '.pu', finish_reason: null }] }, { choices: [{ text: 'sh(x);', finish_reason: null }] }, { choices: [{ text: '', finish_reason: 'stop', stop_reason: null }] }, { choices: [], usage: { completion_tokens: 4 } }, '[DONE]'],
      ],
      text: 'items.push(x);',
    },
    sglang: {
      startsAtDot: true,
      answers: {},
      streams: [
        [{ text: '.le', meta_info: { finish_reason: null, completion_tokens: 1 } }, { text: '.length.', meta_info: { finish_reason: { type: 'stop', matched: 151643 }, completion_tokens: 3 } }, '[DONE]'],
        [{ text: '.toS', meta_info: { finish_reason: null, completion_tokens: 1 } }, { text: '.toString()', meta_info: { finish_reason: { type: 'stop', matched: '\n' }, completion_tokens: 3 } }, '[DONE]'],
      ],
      text: '.length.toString()',
    },
  };
  it.each(REMOTE_ENGINE_NAMES)('%s', async (engine) => {
    const rec = streams[engine];
    const pending = [...rec.streams];
    const bodies: Array<Record<string, unknown>> = [];
    const fake = (async (url: string | URL, init?: RequestInit) => {
      const route = new URL(String(url)).pathname;
      if (rec.answers[route]) return new Response(JSON.stringify(rec.answers[route]));
      bodies.push(JSON.parse(String(init!.body)) as Record<string, unknown>);
      return sse(pending.shift()!);
    }) as typeof fetch;
    const deltas: string[] = [];
    const r = await decodeSegmentwise(createRemoteEngine({ engine, url: 'http://e', fetch: fake }), {
      prompt: [1],
      encode: charCodes,
      maxTokens: 16,
      stop: ['\n'],
      monitor: members,
      startsAtDot: rec.startsAtDot,
      onText: (d) => deltas.push(d),
    });
    expect(r.text).toBe(rec.text);
    expect(deltas.join('')).toBe(rec.text);
    expect(deltas.length).toBeGreaterThan(2);
    expect(pending).toEqual([]);
    for (const b of bodies) expect(b.stream).toBe(true);
    if (engine === 'vllm') expect(bodies[0]).toMatchObject({ stream_options: { include_usage: true } });
  });
});

describe('vllm: the constraint field follows the server version', () => {
  const run = async (version: unknown) => {
    const bodies: Array<Record<string, unknown>> = [];
    const fake = (async (url: string | URL, init?: RequestInit) => {
      const p = new URL(String(url)).pathname;
      if (p === '/version') return new Response(JSON.stringify({ version }));
      if (p === '/v1/models') return new Response(JSON.stringify({ data: [{ id: 'm' }] }));
      bodies.push(JSON.parse(String(init!.body)) as Record<string, unknown>);
      return new Response(JSON.stringify({ choices: [{ text: '.push', finish_reason: 'stop', stop_reason: null }], usage: { completion_tokens: 2 } }));
    }) as typeof fetch;
    const remote = createRemoteEngine({ engine: 'vllm', url: 'http://v', fetch: fake });
    await decodeSegmentwise(remote, { prompt: [1], encode: charCodes, maxTokens: 8, monitor: members, startsAtDot: true });
    return bodies[0]!;
  };
  it('0.11 gets guided_regex, 0.13 structured_outputs; an unreadable version is refused, not run unconstrained', async () => {
    expect(await run('0.11.2')).toHaveProperty('guided_regex');
    expect(await run('0.13.1')).toHaveProperty('structured_outputs.regex');
    await expect(run('dev')).rejects.toThrow(/refusing to run unconstrained/);
  });
});

/** A local port nothing listens on (bound, then released): connecting to it is refused. */
async function closedPort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

describe('engine failures are one clear line', () => {
  it('unreachable, HTTP error, time-out', async () => {
    const port = await closedPort();
    const req = { prompt: [1], maxTokens: 4, stop: [], constraint: null, temperature: 0 };
    await expect(createRemoteEngine({ engine: 'llamacpp', url: `http://127.0.0.1:${port}` }).complete(req)).rejects.toThrow(/llamacpp at http:\/\/127\.0\.0\.1:\d+\/completion: unreachable \(ECONNREFUSED\)/);

    const failing = (async () => new Response('{"error":{"code":400,"message":"failed to parse grammar"}}', { status: 400 })) as typeof fetch;
    await expect(createRemoteEngine({ engine: 'llamacpp', url: 'http://x', fetch: failing }).complete(req)).rejects.toThrow(/HTTP 400: .*failed to parse grammar/);

    const hang = ((_: unknown, init?: RequestInit) => new Promise((_r, reject) => init!.signal!.addEventListener('abort', () => reject(init!.signal!.reason)))) as typeof fetch;
    const e = await createRemoteEngine({ engine: 'sglang', url: 'http://x', fetch: hang, timeoutMs: 50 })
      .complete(req)
      .catch((x: unknown) => x);
    expect(e).toBeInstanceOf(RemoteEngineError);
    expect(String((e as Error).message)).toMatch(/no answer within 50 ms/);
  });

  it('cancellation closes the request and ends the decode with what it has', async () => {
    const ac = new AbortController();
    const hang = ((_: unknown, init?: RequestInit) => {
      setTimeout(() => ac.abort(), 10);
      return new Promise((_r, reject) => init!.signal!.addEventListener('abort', () => reject(init!.signal!.reason)));
    }) as typeof fetch;
    const r = await decodeSegmentwise(createRemoteEngine({ engine: 'llamacpp', url: 'http://x', fetch: hang }), { prompt: [1], encode: charCodes, maxTokens: 8, monitor: null, signal: ac.signal });
    expect(r.finish).toBe('cancelled');
  });
});

// ---- llama.cpp's server shape, served by node-llama-cpp in this process

const peer = await loadNodeLlamaCpp();
if (!peer.ok) console.warn(`remote-backend.test: llama.cpp adapter tests skipped: ${peer.reason}`);

/** The slice of llama.cpp's server we use: POST /completion, non-streaming, greedy. Counts requests. */
async function startLlamaCppAdapter(mod: NodeLlamaCpp, llama: Llama, model: LlamaModel) {
  // test knob: a logit bias on "." (a model that writes member accesses often), so triggers chain
  let dotBias = 0;
  const ctx: LlamaContext = await model.createContext({ contextSize: 512, threads: 1 });
  const seq = ctx.getSequence();
  const log: Array<{ prompt: number[]; grammar: string | null }> = [];
  const complete = async (body: { prompt: number[]; n_predict: number; stop?: string[]; grammar?: string }) => {
    log.push({ prompt: body.prompt, grammar: body.grammar ?? null });
    await seq.clearHistory();
    const grammar = body.grammar ? await llama.createGrammar({ grammar: body.grammar }) : null;
    const grammarEvaluationState = grammar ? new mod.LlamaGrammarEvaluationState({ model, grammar }) : undefined;
    const tokens: number[] = [];
    let content = '';
    let stopType = 'eos';
    let stoppingWord = '';
    const { TokenBias } = mod as unknown as { TokenBias: { for(m: LlamaModel): { set(t: string, b: { logit: number }): unknown } } };
    const tokenBias = dotBias ? TokenBias.for(model).set('.', { logit: dotBias }) : undefined;
    for await (const t of seq.evaluate(body.prompt, { temperature: 0, grammarEvaluationState, tokenBias } as never)) {
      tokens.push(t);
      content = model.detokenize(tokens);
      const hits = (body.stop ?? []).map((s) => [content.indexOf(s), s] as const).filter(([i]) => i >= 0);
      if (hits.length) {
        const [at, word] = hits.sort((a, b) => a[0] - b[0])[0]!;
        content = content.slice(0, at);
        [stopType, stoppingWord] = ['word', word];
        break;
      }
      if (tokens.length >= body.n_predict) {
        stopType = 'limit';
        break;
      }
    }
    return { content, tokens, tokens_predicted: tokens.length, stop: true, stop_type: stopType, stopping_word: stoppingWord };
  };
  const server = http.createServer((req, res) => {
    let data = '';
    req.on('data', (c: Buffer) => (data += c));
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/completion') return void res.writeHead(404).end();
      complete(JSON.parse(data) as never).then(
        (r) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(r)),
        (e: unknown) => res.writeHead(400).end(JSON.stringify({ error: { message: String(e) } })),
      );
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    log,
    setDotBias: (b: number) => (dotBias = b),
    close: async () => {
      await new Promise<void>((r) => server.close(() => r()));
      await ctx.dispose();
    },
  };
}

describe.skipIf(!peer.ok)(`llama.cpp server shape, node-llama-cpp on the exported tiny model${peer.ok ? '' : ` (skipped: ${peer.reason})`}`, () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mgd-remote-'));
  let adapter: Awaited<ReturnType<typeof startLlamaCppAdapter>>;
  let model: LlamaModel;
  let tok: TextTokenizer;

  beforeAll(async () => {
    if (!peer.ok) return;
    const dir = ensureFixtureModel('tiny');
    tok = await loadTokenizer(path.join(dir, 'tokenizer.json'));
    const llama = await getCpuLlama(peer.module);
    model = await llama.loadModel({ modelPath: exportGguf(dir, path.join(tmp, 'tiny.gguf'), 'f32').file });
    adapter = await startLlamaCppAdapter(peer.module, llama, model);
  });
  afterAll(async () => {
    await adapter?.close();
    await model?.dispose();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  const LEGAL = ['x', 'y', 'length', 'add'];
  const monitor: SegmentMonitor = { namesAfterDot: async () => LEGAL };

  it.each([
    ['const v = new Vector(1, 2);\nconsole.log(v', 24],
    ['export function sum(values: number[]): number {\n  return values', 40],
  ])('after %j: every member written is legal, each trigger one request, the prompt only grows', async (prefix, maxTokens) => {
    const before = adapter.log.length;
    const prompt = await tok.encode(prefix);
    const r = await decodeSegmentwise(createRemoteEngine({ engine: 'llamacpp', url: adapter.url }), { prompt, encode: (s) => tok.encode(s), maxTokens, startsAtDot: true, monitor });
    const log = adapter.log.slice(before);
    expect(r.requests).toBe(log.length);
    // the healed dot is a trigger, so the completion starts with a legal member
    expect(r.text).toMatch(new RegExp(`^\\.(?:${LEGAL.join('|')})(?![A-Za-z0-9_$])`));
    // every ".identifier" the model wrote is legal
    for (const m of r.text.matchAll(/\.([A-Za-z_$][A-Za-z0-9_$]*)/g)) expect(LEGAL, r.text).toContain(m[1]);
    // one constrained request per answered trigger, and the rest free (a free segment per dot-free stretch)
    expect(log.filter((l) => l.grammar !== null).length).toBe(r.triggers);
    expect(r.triggers).toBeGreaterThanOrEqual(1);
    // each request's prompt extends the completion's prompt (the engine's prefix cache keeps hitting)
    for (const l of log) expect(l.prompt.slice(0, prompt.length)).toEqual(prompt);
  });

  it('chained member accesses: free text stops before each dot, each answered dot is one constrained request', async () => {
    adapter.setDotBias(4);
    try {
      const before = adapter.log.length;
      const prompt = await tok.encode('const v = new Vector(1, 2);\nconst n = ');
      const r = await decodeSegmentwise(createRemoteEngine({ engine: 'llamacpp', url: adapter.url }), { prompt, encode: (s) => tok.encode(s), maxTokens: 48, monitor });
      const log = adapter.log.slice(before);
      expect(r.triggers).toBeGreaterThanOrEqual(2);
      expect(log.filter((l) => l.grammar !== null).length).toBe(r.triggers);
      expect(r.requests).toBe(log.length);
      const written = [...r.text.matchAll(/\.([A-Za-z_$][A-Za-z0-9_$]*)/g)].map((m) => m[1]!);
      expect(written.length).toBeGreaterThanOrEqual(2);
      // a name cut by the token budget at the very end is a prefix of a legal one
      const last = r.finish === 'length' && /[A-Za-z0-9_$]$/.test(r.text) ? written.pop() : undefined;
      for (const w of written) expect(LEGAL, r.text).toContain(w);
      if (last !== undefined) expect(LEGAL.some((n) => n.startsWith(last)), r.text).toBe(true);
      // consecutive requests: each prompt extends the one before (the slot's KV is reused up to the new text)
      for (let i = 1; i < log.length; i++) expect(log[i]!.prompt.slice(0, prompt.length)).toEqual(prompt);
    } finally {
      adapter.setDotBias(0);
    }
  });

  it('mgd complete --backend remote --engine llamacpp: the type oracle steers the engine; a dead engine is one line, exit 2', async () => {
    const root = path.resolve(import.meta.dirname, '..');
    const workspace = path.join(root, 'fixtures/repos/shapes');
    let stdout = '';
    let stderr = '';
    const io = { stdout: (x: string) => (stdout += x), stderr: (x: string) => (stderr += x) };
    const args = ['complete', path.join(workspace, 'src/main.ts'), '--line', '10', '--character', '13', '--workspace', workspace, '--model', ensureFixtureModel('tiny'), '--typescript', 'in-process', '--max-tokens', '12', '--json'];
    const before = adapter.log.length;
    expect(await main([...args, '--backend', 'remote', '--engine', 'llamacpp', '--url', adapter.url], io), stderr).toBe(0);
    const r = JSON.parse(stdout) as { text: string; monitor: { triggers: number; errors: number }; remote: { requests: number } };
    // `sum += c.` is healed: the completion re-spells the dot, then a member of Circle
    expect(r.text).toMatch(/^\.(?:center|radius|area|translate)(?![A-Za-z0-9_$])/);
    expect(r.monitor).toMatchObject({ errors: 0 });
    expect(r.monitor.triggers).toBeGreaterThanOrEqual(1);
    expect(r.remote.requests).toBe(adapter.log.length - before);

    const port = await closedPort();
    stderr = '';
    expect(await main([...args, '--backend', 'remote', '--engine', 'llamacpp', '--url', `http://127.0.0.1:${port}`], io)).toBe(2);
    expect(stderr.trim().split('\n')).toHaveLength(1);
    expect(stderr).toMatch(/^mgd: llamacpp at http:\/\/127\.0\.0\.1:\d+\/completion: unreachable \(ECONNREFUSED\)$/m);
  });

  it('mgd serve --backend remote: the language server completes through the engine, the monitor steering it', async () => {
    const before = adapter.log.length;
    const s = await lspSession(['--backend', 'remote', '--engine', 'llamacpp', '--url', adapter.url]);
    try {
      const member = await s.inline();
      const st = await s.stats();
      expect(ACCOUNT_MEMBERS.some((m) => member.length > 0 && m.startsWith(member)), `${member} ${JSON.stringify(st)} ${s.logs.join('|')}`).toBe(true);
      expect(st.remote).toMatchObject({ requests: 1, failures: 0 });
      expect(st.remote!.engineRequests).toBe(adapter.log.length - before);
      expect(st.lastMonitorTriggers).toBeGreaterThanOrEqual(1);
      // the dot's segment was constrained: its request carried a grammar
      expect(adapter.log.slice(before).some((r) => r.grammar !== null)).toBe(true);
    } finally {
      s.close();
    }
  });
});

const ROOT = path.resolve(import.meta.dirname, '..');
const CASES = path.join(ROOT, 'fixtures/repos/monitor-cases');
const TYPING = pathToFileURL(path.join(CASES, 'src/typing.ts')).href;
const ACCOUNT_MEMBERS = ['balance', 'deposit', 'id', 'owner', 'withdraw'];

/** `mgd serve --stdio` with extra arguments, initialized on monitor-cases with typing.ts open at `acc.`. */
async function lspSession(extra: string[]) {
  const child = spawn(process.execPath, [path.join(ROOT, 'bin/mgd.js'), 'serve', '--stdio', '--model', ensureFixtureModel('tiny'), '--threads', '1', '--typescript', 'in-process', '--no-persist-cache', ...extra], { stdio: ['pipe', 'pipe', 'pipe'] });
  const conn: MessageConnection = createMessageConnection(new StreamMessageReader(child.stdout!), new StreamMessageWriter(child.stdin!));
  const logs: string[] = [];
  conn.onNotification('window/logMessage', (p: { message: string }) => logs.push(p.message));
  conn.listen();
  await conn.sendRequest('initialize', { processId: process.pid, rootUri: pathToFileURL(CASES).href, capabilities: {}, initializationOptions: { maxTokens: 8 } });
  await conn.sendNotification('initialized', {});
  const text = `import { Account } from './model.js';\nexport function f(acc: Account) {\n  return acc.\n}\n`;
  await conn.sendNotification('textDocument/didOpen', { textDocument: { uri: TYPING, languageId: 'typescript', version: 1, text } });
  const inline = async () => {
    const r = await conn.sendRequest<{ items: Array<{ insertText: string }> }>('textDocument/inlineCompletion', { textDocument: { uri: TYPING }, position: { line: 2, character: 13 }, context: { triggerKind: 1 } });
    return /^[A-Za-z_$][\w$]*/.exec(r.items[0]?.insertText ?? '')?.[0] ?? '';
  };
  const stats = () => conn.sendRequest<{ remote?: { requests: number; engineRequests: number; failures: number }; lastMonitorTriggers: number }>('mgd/stats');
  const close = () => {
    conn.dispose();
    child.kill();
  };
  return { conn, logs, inline, stats, close };
}

describe('mgd serve --backend remote: an engine that is down', () => {
  it('answers from the local model, says why once, and counts the failures', async () => {
    const port = await closedPort();
    const s = await lspSession(['--backend', 'remote', '--engine', 'llamacpp', '--url', `http://127.0.0.1:${port}`]);
    try {
      for (let i = 0; i < 2; i++) {
        const member = await s.inline();
        // the local model under the local monitors: a member of Account (or its start, in 8 tokens)
        expect(ACCOUNT_MEMBERS.some((m) => member.length > 0 && m.startsWith(member)), member).toBe(true);
      }
      const st = await s.stats();
      expect(st.remote).toMatchObject({ requests: 2, failures: 2, engineRequests: 0 });
      const said = s.logs.filter((l) => l.includes('the serving engine'));
      expect(said).toHaveLength(1); // the same failure twice is said once
      expect(said[0]).toMatch(/llamacpp at http:\/\/127\.0\.0\.1:\d+\) failed: .*unreachable.*; answering from the local model$/);
    } finally {
      s.close();
    }
  });

  it('refuses a remote backend without an engine or URL, and over HTTP, in one line', async () => {
    let stderr = '';
    const io = { stdout: () => undefined, stderr: (x: string) => (stderr += x) };
    expect(await main(['serve', '--stdio', '--backend', 'remote', '--url', 'http://127.0.0.1:1'], io)).toBe(2);
    expect(await main(['serve', '--http', '--backend', 'remote', '--engine', 'vllm', '--url', 'http://127.0.0.1:1'], io)).toBe(2);
    expect(stderr.trim().split('\n')).toHaveLength(2);
  });
});
