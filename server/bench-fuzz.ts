/**
 * `mgd bench fuzz`: both doors of the server against generated hostile input, seeded and reproducible, bounded in
 * count. Each door runs as its own process (`mgd serve --stdio`, `mgd serve --http` on a loopback port) and gets N
 * inputs in batches; after each batch a valid request must still be answered with the text the first one got, the
 * process must be alive, and its stderr must show no unhandled rejection or exception. RSS (Linux /proc) is sampled
 * after every batch.
 *
 *   LSP: broken framing (lengths that are not numbers, negative, absurd; missing headers; garbage; frames split into
 *        bytes and merged), invalid UTF-8 and deeply nested JSON bodies, JSON that is not JSON-RPC, every method the
 *        server handles with each field in turn given a wrong type, positions outside documents, unknown URIs,
 *        cancels of unknown ids; the last batch is requests after shutdown.
 *   HTTP: malformed and wrongly typed JSON bodies, unknown routes and methods, oversized headers and bodies, bodies
 *        that arrive slowly or are cut off, a client that disconnects mid-stream, 100 clients at once.
 * What is measured is survival, not speed: a failing input is reported (kind and the input, shortened) so it can
 * become a regression test.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { packageRoot } from '../engine/paths.js';

export interface FuzzOptions {
  door?: 'lsp' | 'http' | 'both';
  /** Inputs per door (default 10,000). */
  inputs?: number;
  seed?: number;
  model?: string;
  threads?: number;
  /** Inputs between two checks (default 500). */
  batch?: number;
  log?: (line: string) => void;
}

export interface DoorReport {
  inputs: number;
  byKind: Record<string, number>;
  batches: number;
  /** Checks (a valid request after a batch) answered as the first was. */
  passed: number;
  /** The batches after which the check failed, with the batch's last input. */
  failures: Array<{ batch: number; why: string; lastKind: string; lastInput: string }>;
  /** The process died. */
  crashed: boolean;
  /** Lines of stderr that report an unhandled rejection or an uncaught exception. */
  unhandled: string[];
  rssMB: { first: number | null; max: number | null; last: number | null };
  ms: number;
}

export interface FuzzReport {
  seed: number;
  lsp?: DoorReport;
  http?: DoorReport;
}

type Rand = () => number;

function prng(seed: number): Rand {
  let s = seed >>> 0 || 1;
  return () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32);
}

const pickOf = (rand: Rand) => <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;

/** Values of every JSON type, and the awkward ones of each. */
const WRONG: readonly unknown[] = [null, true, 0, -1, 1e308, 2 ** 53 + 1, 1.5, '', 'x', '\u0000\uffff', 'a'.repeat(5000), [], [1, 'a'], {}, { a: { b: {} } }];

/** A deep copy of `o` with the field at a random path replaced by a value of another type (or removed). */
function mutate(o: unknown, rand: Rand): unknown {
  const copy = JSON.parse(JSON.stringify(o)) as unknown;
  const paths: Array<Array<string | number>> = [];
  const walk = (v: unknown, p: Array<string | number>) => {
    if (p.length) paths.push(p);
    if (v && typeof v === 'object') for (const [k, c] of Object.entries(v)) walk(c, [...p, Array.isArray(v) ? Number(k) : k]);
  };
  walk(copy, []);
  if (!paths.length) return WRONG[Math.floor(rand() * WRONG.length)];
  const p = paths[Math.floor(rand() * paths.length)]!;
  let parent = copy as Record<string | number, unknown>;
  for (const k of p.slice(0, -1)) parent = parent[k] as Record<string | number, unknown>;
  const last = p[p.length - 1]!;
  if (rand() < 0.15) delete parent[last];
  else parent[last] = WRONG[Math.floor(rand() * WRONG.length)];
  return copy;
}

function rssMB(pid: number | undefined): number | null {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Math.round(Number(m[1]) / 1024) : null;
  } catch {
    return null;
  }
}

const UNHANDLED = /unhandled|uncaught|FATAL ERROR|Segmentation fault/i;

function serverArgs(o: FuzzOptions, extra: string[]): string[] {
  return [path.join(packageRoot(), 'bin/mgd.js'), 'serve', ...extra, ...(o.model ? ['--model', o.model] : []), ...(o.threads ? ['--threads', String(o.threads)] : [])];
}

function newReport(): DoorReport {
  return { inputs: 0, byKind: {}, batches: 0, passed: 0, failures: [], crashed: false, unhandled: [], rssMB: { first: null, max: null, last: null }, ms: 0 };
}

function sampleRss(r: DoorReport, pid: number | undefined): void {
  const mb = rssMB(pid);
  if (mb === null) return;
  r.rssMB.first ??= mb;
  r.rssMB.max = Math.max(r.rssMB.max ?? 0, mb);
  r.rssMB.last = mb;
}

function watchStderr(child: ChildProcess, r: DoorReport): () => string {
  let tail = '';
  let partial = '';
  child.stderr!.on('data', (d: Buffer) => {
    const text = partial + d.toString('utf8');
    const lines = text.split('\n');
    partial = lines.pop() ?? '';
    for (const l of lines) if (UNHANDLED.test(l) && r.unhandled.length < 20) r.unhandled.push(l.slice(0, 300));
    tail = (tail + text).slice(-2000);
  });
  return () => tail;
}

/** The last lines of a process's stderr, for a failure's reason. */
const lastLines = (text: string) => text.trim().split('\n').slice(-4).join(' | ').slice(-600);

const short = (x: unknown) => {
  const s = Buffer.isBuffer(x) ? `<${x.length} bytes>` : typeof x === 'string' ? x : JSON.stringify(x);
  return s.length > 200 ? `${s.slice(0, 200)}… (${s.length} chars)` : s;
};

/**
 * After a batch: the valid request must get the reference answer from a live process. Records the outcome and the
 * RSS, logs a line; false when the process is dead (the run of this door is over).
 */
async function checkBatch(
  r: DoorReport,
  child: ChildProcess,
  tail: () => string,
  answer: () => Promise<string | null>,
  reference: string,
  lastKind: string,
  lastInput: string,
  door: string,
  log?: (line: string) => void,
): Promise<boolean> {
  const got = child.exitCode === null ? await answer() : null;
  sampleRss(r, child.pid);
  if (got === reference) r.passed++;
  else {
    const why = child.exitCode !== null ? `exited with ${child.exitCode}: ${lastLines(tail())}` : got === null ? `no answer (${lastLines(tail())})` : `answered ${short(got)}`;
    r.failures.push({ batch: r.batches, why, lastKind, lastInput });
  }
  log?.(`${door}: ${r.inputs} inputs, rss ${r.rssMB.last} MB, ${r.passed}/${r.batches} checks passed${got === reference ? '' : `; ${r.failures.at(-1)!.why} after ${lastKind} ${lastInput}`}`);
  return child.exitCode === null;
}

// ---- the LSP door -------------------------------------------------------------------------------------------------

/** An LSP frame: the Content-Length header, then the body. */
export const frame = (body: string | Buffer): Buffer => {
  const b = Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8');
  return Buffer.concat([Buffer.from(`Content-Length: ${b.length}\r\n\r\n`, 'ascii'), b]);
};

/** Reads framed JSON-RPC messages from the server's stdout. */
class FrameReader {
  private buf = Buffer.alloc(0);
  private readonly waiting = new Map<string | number, (m: Record<string, unknown>) => void>();
  constructor(stream: NodeJS.ReadableStream) {
    stream.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      for (;;) {
        const end = this.buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const n = Number(/Content-Length: (\d+)/i.exec(this.buf.subarray(0, end).toString('latin1'))?.[1] ?? NaN);
        if (!Number.isFinite(n) || this.buf.length < end + 4 + n) return;
        const body = this.buf.subarray(end + 4, end + 4 + n).toString('utf8');
        this.buf = this.buf.subarray(end + 4 + n);
        try {
          const m = JSON.parse(body) as Record<string, unknown>;
          const id = m.id as string | number | undefined;
          if (id !== undefined && this.waiting.has(id) && !('method' in m)) {
            this.waiting.get(id)!(m);
            this.waiting.delete(id);
          }
        } catch {
          // the server never writes bad JSON; if it did, the check that waits for it fails
        }
      }
    });
  }
  response(id: string | number, ms: number): Promise<Record<string, unknown> | null> {
    return new Promise((resolve) => {
      const t = setTimeout(() => (this.waiting.delete(id), resolve(null)), ms);
      this.waiting.set(id, (m) => (clearTimeout(t), resolve(m)));
    });
  }
}

async function fuzzLsp(o: FuzzOptions, inputs: number, rand: Rand): Promise<DoorReport> {
  const r = newReport();
  const t0 = performance.now();
  const pick = pickOf(rand);
  const workspace = path.join(packageRoot(), 'fixtures/repos/monitor-cases');
  const child = spawn(process.execPath, serverArgs(o, ['--stdio']), { cwd: workspace, stdio: ['pipe', 'pipe', 'pipe'] });
  const tail = watchStderr(child, r);
  child.stdin!.on('error', () => {}); // a dead server: reported by the check, not thrown here
  const reader = new FrameReader(child.stdout!);
  const write = (b: Buffer | string) => child.stdin!.write(b);
  const send = (m: unknown) => write(frame(JSON.stringify(m)));
  const uri = pathToFileURL(path.join(workspace, 'src/fuzz-check.ts')).href;
  const docText = fs.readFileSync(path.join(workspace, 'src/model.ts'), 'utf8') + '\nexport function f(acc: Account) {\n  return acc.';
  const lines = docText.split('\n');
  // an automatic request: one candidate (an invoked one shows as many clean ones as the verifier finds in its budget)
  const checkParams = { textDocument: { uri }, position: { line: lines.length - 1, character: lines.at(-1)!.length }, context: { triggerKind: 2 } };
  let nextId = 1;
  const request = async (method: string, params: unknown, ms = 120_000) => {
    const id = `check-${nextId++}`;
    send({ jsonrpc: '2.0', id, method, params });
    return reader.response(id, Math.min(ms, 30_000));
  };
  // the check's settings, restored before each check (the inputs change them): no repository context, so the
  // check's prompt is its document alone and its greedy answer cannot move with what the inputs opened
  const settings = { maxTokens: 16, contextTokens: 0, monitors: true, monitorKinds: {} };
  const initialized = await request('initialize', { processId: null, rootUri: pathToFileURL(workspace).href, capabilities: {}, initializationOptions: settings });
  if (!initialized) throw new Error(`mgd serve --stdio did not initialize: ${tail()}`);
  send({ jsonrpc: '2.0', method: 'initialized', params: {} });
  send({ jsonrpc: '2.0', method: 'textDocument/didOpen', params: { textDocument: { uri, languageId: 'typescript', version: 1, text: docText } } });
  const answer = async () => {
    send({ jsonrpc: '2.0', method: 'workspace/didChangeConfiguration', params: { settings: { mgd: settings } } });
    const m = await request('textDocument/inlineCompletion', checkParams);
    return m && 'result' in m ? JSON.stringify(m.result) : null;
  };
  const reference = await answer();
  if (reference === null) throw new Error(`the first valid completion got no answer: ${tail()}`);

  // documents the inputs may touch (the check's document is never edited by them)
  const docs = Array.from({ length: 4 }, (_, i) => pathToFileURL(path.join(workspace, `src/fuzz-${i}.ts`)).href);
  const version = new Map<string, number>();
  const valid: Record<string, () => unknown> = {
    'textDocument/didOpen': () => ({ textDocument: { uri: pick(docs), languageId: 'typescript', version: 1, text: docText.slice(0, Math.floor(rand() * docText.length)) } }),
    'textDocument/didChange': () => {
      const u = pick(docs);
      const v = (version.get(u) ?? 1) + 1;
      version.set(u, v);
      const line = Math.floor(rand() * 60);
      return { textDocument: { uri: u, version: v }, contentChanges: [{ range: { start: { line, character: 0 }, end: { line, character: Math.floor(rand() * 10) } }, text: pick(['acc.', '(', ')', '\n', '', 'é✓', '"']) }] };
    },
    'textDocument/didClose': () => ({ textDocument: { uri: pick(docs) } }),
    'textDocument/inlineCompletion': () => ({ textDocument: { uri: pick(docs) }, position: { line: Math.floor(rand() * 80) - 5, character: Math.floor(rand() * 120) - 5 }, context: { triggerKind: pick([1, 2]) } }),
    'textDocument/completion': () => ({ textDocument: { uri: pick([...docs, 'file:///nowhere/x.ts', 'untitled:1', 'not a uri']) }, position: { line: Math.floor(rand() * 1e6), character: 0 } }),
    'workspace/didChangeConfiguration': () => ({ settings: { mgd: { maxTokens: pick([1, 8, 48]), monitors: pick([true, false]), monitorKinds: { dereference: pick([true, false]) } } } }),
    'mgd/didFocus': () => ({ textDocument: { uri: pick(docs) }, position: { line: Math.floor(rand() * 40), character: 0 } }),
    'mgd/didAccept': () => ({ kind: pick(['inline', 'completion', 'x']) }),
    'mgd/stats': () => ({}),
    '$/cancelRequest': () => ({ id: pick([1, 'nope', -1, 1e9]) }),
  };
  const methods = Object.keys(valid);
  const isRequest = (m: string) => ['textDocument/inlineCompletion', 'textDocument/completion', 'mgd/stats'].includes(m);
  let fuzzId = 0;
  const message = (method: string, params: unknown) => ({ jsonrpc: '2.0', ...(isRequest(method) ? { id: `f${fuzzId++}` } : {}), method, params });
  const generators: Array<[string, () => Buffer | string | unknown]> = [
    ['valid', () => { const m = pick(methods); return message(m, valid[m]!()); }],
    ['wrong-type', () => { const m = pick(methods); return mutate(message(m, valid[m]!()), rand); }],
    ['not-json-rpc', () => pick<unknown>([[1, 2, 3], 'just a string', 42, null, { jsonrpc: '1.0', id: 'a', method: 42 }, { id: {}, method: [] }, { jsonrpc: '2.0', id: 1e400, result: 1 }])],
    ['unknown-method', () => ({ jsonrpc: '2.0', id: `u${fuzzId++}`, method: `mgd/unknown/${Math.floor(rand() * 1e6)}`, params: {} })],
    ['bad-json', () => pick(['{"jsonrpc": "2.0", "id": ', '{]', '', '\u0000', '{"a":1}}', 'NaN'])],
    ['deep-json', () => '['.repeat(2000 + Math.floor(rand() * 20000)) + ']'.repeat(10)],
    ['invalid-utf8', () => Buffer.concat([Buffer.from('{"jsonrpc":"2.0","method":"textDocument/didOpen","params":{"textDocument":{"uri":"file:///u.ts","languageId":"typescript","version":1,"text":"'), Buffer.from([0xc3, 0x28, 0xff, 0xfe, 0xed, 0xa0, 0x80]), Buffer.from('"}}}')])],
  ];
  // framing faults are written raw, not framed
  const framing: Array<[string, () => Buffer | string]> = [
    ['bad-length', () => `Content-Length: ${pick(['abc', '-5', '1e3', '99999999999999', ' ', '0x10'])}\r\n\r\n{}`],
    ['no-header', () => pick(['Content-Type: application/json\r\n\r\n{}', 'garbage\r\n\r\n', '\r\n\r\n'])],
    ['garbage', () => Buffer.from(Array.from({ length: 1 + Math.floor(rand() * 512) }, () => Math.floor(rand() * 256)))],
    ['split', () => 'split'],
    ['merged', () => 'merged'],
  ];
  const batch = o.batch ?? 500;
  let lastKind = '';
  let last: unknown = '';
  for (let sent = 0; sent < inputs; ) {
    const n = Math.min(batch, inputs - sent);
    for (let i = 0; i < n; i++, sent++) {
      const useFraming = rand() < 0.2;
      const [kind, gen] = useFraming ? pick(framing) : pick(generators);
      const input = gen();
      r.byKind[kind] = (r.byKind[kind] ?? 0) + 1;
      lastKind = kind;
      last = input;
      if (kind === 'split' || kind === 'merged') {
        const m = pick(methods);
        const a = frame(JSON.stringify(message(m, valid[m]!())));
        const b = frame(JSON.stringify(message('mgd/stats', {})));
        if (kind === 'merged') write(Buffer.concat([a, b]));
        else
          for (let at = 0; at < a.length; ) {
            const n = 1 + Math.floor(rand() * 16);
            write(a.subarray(at, at + n));
            at += n;
          }
      } else if (useFraming) write(input as Buffer | string);
      else write(frame(Buffer.isBuffer(input) ? input : typeof input === 'string' ? input : JSON.stringify(input)));
    }
    r.inputs = sent;
    r.batches++;
    // a header whose body never came swallows what follows until the guard gives up on it: close any such frame
    write(frame(JSON.stringify({ jsonrpc: '2.0', method: 'mgd/didAccept', params: {} })));
    if (!(await checkBatch(r, child, tail, answer, reference, lastKind, short(last), 'lsp', o.log))) break;
  }
  // requests after shutdown: errors, never a crash; then exit ends the process
  if (child.exitCode === null) {
    const down = await request('shutdown', null, 30_000);
    const after = await request('textDocument/inlineCompletion', checkParams, 30_000);
    r.byKind['after-shutdown'] = 1;
    if (!down || !after || !('error' in after)) r.failures.push({ batch: r.batches + 1, why: `after shutdown: ${short(after)}`, lastKind: 'after-shutdown', lastInput: 'textDocument/inlineCompletion' });
    send({ jsonrpc: '2.0', method: 'exit' });
  }
  const code = await new Promise<number | null>((resolve) => {
    if (child.exitCode !== null) return resolve(child.exitCode);
    const t = setTimeout(() => (child.kill('SIGKILL'), resolve(null)), 20_000);
    child.on('exit', (c) => (clearTimeout(t), resolve(c)));
  });
  r.crashed = code !== 0;
  r.ms = Math.round(performance.now() - t0);
  return r;
}

// ---- the HTTP door ------------------------------------------------------------------------------------------------

interface RawAnswer {
  status: number | null;
  body: string;
}

/** Writes `parts` to a fresh connection (with `gapMs` between them), reads until the server closes or `ms` passes. */
function raw(port: number, parts: Array<Buffer | string>, o: { gapMs?: number; ms?: number; abortAfter?: number } = {}): Promise<RawAnswer> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let got = '';
    const finish = () => {
      clearTimeout(timer);
      s.destroy();
      const status = /^HTTP\/1\.1 (\d{3})/.exec(got)?.[1];
      resolve({ status: status ? Number(status) : null, body: got.slice(got.indexOf('\r\n\r\n') + 4) });
    };
    const timer = setTimeout(finish, o.ms ?? 5000);
    s.on('data', (d: Buffer) => (got += d.toString('utf8')));
    s.on('error', finish);
    s.on('close', finish);
    s.on('connect', async () => {
      for (let i = 0; i < parts.length; i++) {
        if (s.destroyed) return;
        s.write(parts[i]!);
        if (o.abortAfter === i) return void s.destroy();
        if (o.gapMs) await new Promise((r) => setTimeout(r, o.gapMs));
      }
    });
  });
}

function post(port: number, body: string | Buffer, headers: Record<string, string> = {}): Buffer {
  const b = Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8');
  const h = { host: `127.0.0.1:${port}`, 'content-type': 'application/json', 'content-length': String(b.length), connection: 'close', ...headers };
  return Buffer.concat([Buffer.from(`POST /v1/completions HTTP/1.1\r\n${Object.entries(h).map(([k, v]) => `${k}: ${v}`).join('\r\n')}\r\n\r\n`, 'latin1'), b]);
}

async function fuzzHttp(o: FuzzOptions, inputs: number, rand: Rand): Promise<DoorReport> {
  const r = newReport();
  const t0 = performance.now();
  const pick = pickOf(rand);
  const workspace = path.join(packageRoot(), 'fixtures/repos/monitor-cases');
  const child = spawn(process.execPath, serverArgs(o, ['--http', '--port', '0', '--workspace', workspace]), { cwd: workspace, stdio: ['ignore', 'ignore', 'pipe'] });
  const tail = watchStderr(child, r);
  const port = await new Promise<number>((resolve, reject) => {
    let text = '';
    const t = setTimeout(() => reject(new Error(`mgd serve --http did not listen: ${tail()}`)), 60_000);
    child.stderr!.on('data', (d: Buffer) => {
      const m = /listening on http:\/\/[^:]+:(\d+)/.exec((text += d.toString()));
      if (m) (clearTimeout(t), resolve(Number(m[1])));
    });
    child.on('exit', (c) => reject(new Error(`mgd serve --http exited with ${c}: ${tail()}`)));
  });
  // no file path: no repository context (which the inputs' documents would change) and no analysis, so the check's
  // greedy answer depends on the model alone
  const checkBody = JSON.stringify({ prefix: fs.readFileSync(path.join(workspace, 'src/model.ts'), 'utf8') + '\nexport function f(acc: Account) {\n  return acc.', suffix: '\n}\n', max_tokens: 8 });
  const answer = async () => {
    const a = await raw(port, [post(port, checkBody)], { ms: 120_000 });
    if (a.status !== 200) return null;
    try {
      return (JSON.parse(a.body) as { text?: string }).text ?? null;
    } catch {
      return null;
    }
  };
  const reference = await answer();
  if (reference === null) throw new Error(`the first valid completion got no answer: ${tail()}`);
  const validBody = () => ({ prefix: pick(['const a = acc.', 'x.', '', '\u0000', 'é✓'.repeat(100)]), suffix: pick(['', '\n}\n']), filepath: pick(['src/model.ts', 'src/new.ts', undefined]), max_tokens: pick([1, 2, 4]) });
  type Gen = () => { parts: Array<Buffer | string>; opts?: Parameters<typeof raw>[2] };
  const gens: Array<[string, Gen]> = [
    ['valid', () => ({ parts: [post(port, JSON.stringify(validBody()))] })],
    ['wrong-type', () => ({ parts: [post(port, JSON.stringify(mutate(validBody(), rand)))] })],
    ['bad-json', () => ({ parts: [post(port, pick(['{', '[]', 'null', '"s"', '{"prefix": }', '\u0000\u0001', '{"prefix":"a"}}']))] })],
    ['escape-path', () => ({ parts: [post(port, JSON.stringify({ prefix: 'x', filepath: pick(['../../etc/passwd', '/etc/passwd', 'src/../../x.ts', '\u0000.ts', 'C:\\x.ts']) }))] })],
    ['wrong-route', () => ({ parts: [`${pick(['GET', 'PUT', 'DELETE', 'PATCH', 'FOO'])} ${pick(['/', '/v1/completions', '/health?x=%zz', '/%00', '//..//', '/v2'])} HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\nconnection: close\r\n\r\n`] })],
    ['bad-host', () => ({ parts: [post(port, '{"prefix":"x"}', { host: pick(['evil.example', 'localhost.evil.example', '', '127.0.0.1:1']) })] })],
    ['cross-site', () => ({ parts: [post(port, '{"prefix":"x"}', { origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' })] })],
    ['huge-header', () => ({ parts: [`GET /health HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\nx-big: ${'a'.repeat(20_000 + Math.floor(rand() * 60_000))}\r\n\r\n`] })],
    ['huge-body', () => ({ parts: [post(port, Buffer.alloc(3 * 1024 * 1024, 0x61))], opts: { ms: 10_000 } })],
    ['lying-length', () => ({ parts: [post(port, '{"prefix":"x"}', { 'content-length': pick(['-1', 'abc', '99999999']) })], opts: { ms: 300 } })],
    ['slow-body', () => { const b = post(port, JSON.stringify(validBody())); const cut = Math.floor(b.length / 2); return { parts: [b.subarray(0, cut), b.subarray(cut)], opts: { gapMs: 200 } }; }],
    ['aborted', () => { const b = post(port, JSON.stringify({ ...validBody(), stream: pick([true, false]), max_tokens: 16 })); return { parts: [b.subarray(0, Math.floor(rand() * b.length)), b], opts: { abortAfter: pick([0, 1]) } }; }],
    ['garbage', () => ({ parts: [Buffer.from(Array.from({ length: 1 + Math.floor(rand() * 400) }, () => Math.floor(rand() * 256)))], opts: { ms: 300 } })],
  ];
  const batch = o.batch ?? 500;
  let lastKind = '';
  let last = '';
  const CONCURRENT = 100;
  for (let sent = 0; sent < inputs; ) {
    const n = Math.min(batch, inputs - sent);
    // in waves of 100 clients at once
    for (let done = 0; done < n; ) {
      const wave = Math.min(CONCURRENT, n - done);
      const runs: Array<Promise<RawAnswer>> = [];
      for (let i = 0; i < wave; i++) {
        const [kind, gen] = pick(gens);
        const g = gen();
        r.byKind[kind] = (r.byKind[kind] ?? 0) + 1;
        lastKind = kind;
        last = short(Buffer.concat(g.parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p, 'latin1')))).toString('latin1'));
        runs.push(raw(port, g.parts, g.opts));
      }
      await Promise.all(runs);
      done += wave;
    }
    sent += n;
    r.inputs = sent;
    r.batches++;
    if (!(await checkBatch(r, child, tail, answer, reference, lastKind, last, 'http', o.log))) break;
  }
  r.crashed = child.exitCode !== null;
  const code = await new Promise<number | null>((resolve) => {
    if (child.exitCode !== null) return resolve(child.exitCode);
    child.on('exit', (c) => resolve(c));
    child.kill('SIGTERM');
  });
  if (code !== 0 && !r.crashed) r.failures.push({ batch: r.batches, why: `exited with ${code} on SIGTERM`, lastKind: 'shutdown', lastInput: '' });
  r.ms = Math.round(performance.now() - t0);
  return r;
}

export async function benchFuzz(o: FuzzOptions = {}): Promise<FuzzReport> {
  const seed = o.seed ?? 1;
  const inputs = o.inputs ?? 10_000;
  const door = o.door ?? 'both';
  const report: FuzzReport = { seed };
  if (door !== 'http') report.lsp = await fuzzLsp(o, inputs, prng(seed));
  if (door !== 'lsp') report.http = await fuzzHttp(o, inputs, prng(seed + 1));
  return report;
}
