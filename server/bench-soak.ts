/**
 * `mgd bench soak`: hours of editor use, compressed. Drives `mgd serve --stdio` as a separate process through a real
 * protocol client (vscode-languageserver-protocol) over D documents: open, edit at random places, ask for an inline
 * completion, cancel half of the requests mid-flight, focus, close and reopen, N completions in all. Samples the
 * server's memory (RSS and V8 heap, from mgd/stats), its KV cache against its budget, its open file descriptors and
 * its child processes (language servers) at 0/10/50/100% of the run, and latency per decile.
 *
 * What a leak looks like here: RSS that keeps growing after warm-up (the 10% sample is the reference: models, the
 * checker and the caches are loaded by then), descriptors or children that only ever increase. The run is seeded,
 * so two runs send the same messages; timing (and so what a cancel hits) still varies.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  CancellationTokenSource,
  createProtocolConnection,
  DidChangeTextDocumentNotification,
  DidCloseTextDocumentNotification,
  DidOpenTextDocumentNotification,
  ExitNotification,
  InitializedNotification,
  InitializeRequest,
  InlineCompletionRequest,
  InlineCompletionTriggerKind,
  ShutdownRequest,
  StreamMessageReader,
  StreamMessageWriter,
} from 'vscode-languageserver-protocol/node';
import { positionAt } from '../engine/analysis/text-edit.js';
import { packageRoot } from '../engine/paths.js';

export interface SoakOptions {
  model?: string;
  completions?: number;
  documents?: number;
  threads?: number;
  seed?: number;
  /** The workspace the documents live in (default: the monitor-cases fixture); documents are never written to disk. */
  workspace?: string;
  /** Environment for the server process (e.g. MGD_CACHE_DIR). */
  env?: NodeJS.ProcessEnv;
  /** Extra `mgd serve` flags. */
  serveArgs?: string[];
}

export interface SoakSample {
  at: number; // completions done when sampled
  rssBytes: number;
  heapUsedBytes: number;
  kvCacheBytes: number | null;
  kvCacheBudgetBytes: number | null;
  openFds: number | null; // Linux (/proc) only
  children: number | null; // descendant processes, Linux only
}

/** Characters a document may grow by before it is reset to the fixture's text (about 250 edits). */
const GROWTH_LIMIT = 2_000;

/** Snippets typed at random places: member accesses, calls and statements the monitors and the checker all see. */
const EDITS = ['acc.', 'acc.balance', '\n  const x = acc.', '\n  return ', 'Math.', ' + ', '(', ')', '\n', '  ', 'new ', 'acc.deposit(', '.'];

export async function benchSoak(o: SoakOptions = {}) {
  const completions = o.completions ?? 10_000;
  const documents = o.documents ?? 8;
  const workspace = o.workspace ?? path.join(packageRoot(), 'fixtures/repos/monitor-cases');
  const seedText = fs.readFileSync(path.join(workspace, 'src/model.ts'), 'utf8');
  let seed = o.seed ?? 1;
  const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;

  const args = [path.join(packageRoot(), 'bin/mgd.js'), 'serve', '--stdio', ...(o.model ? ['--model', o.model] : []), ...(o.threads ? ['--threads', String(o.threads)] : []), ...(o.serveArgs ?? [])];
  const child = spawn(process.execPath, args, { cwd: workspace, stdio: ['pipe', 'pipe', 'pipe'], env: o.env ?? process.env });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000); // the last lines, for an error message
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const conn = createProtocolConnection(new StreamMessageReader(child.stdout!), new StreamMessageWriter(child.stdin!));
  conn.listen();
  const died = exited.then((code) => Promise.reject(new Error(`mgd serve exited with ${code}: ${stderr.trim().split('\n').pop() ?? ''}`)));
  const guard = <T>(p: Promise<T>) => Promise.race([p, died]);

  const samples: SoakSample[] = [];
  const latencies: number[][] = Array.from({ length: 10 }, () => []);
  let cancelled = 0;
  let failed = 0;
  const t0 = performance.now();
  try {
    const root = pathToFileURL(workspace).href;
    await guard(conn.sendRequest(InitializeRequest.type, { processId: process.pid, rootUri: root, workspaceFolders: [{ uri: root, name: 'soak' }], capabilities: {}, initializationOptions: { maxTokens: 8 } }));
    await conn.sendNotification(InitializedNotification.type, {});

    // each document: its text here (the client's copy), its version, and whether it is open
    const docs = Array.from({ length: documents }, (_, i) => ({ uri: pathToFileURL(path.join(workspace, `src/soak-${i}.ts`)).href, text: seedText, version: 1, open: false }));
    const open = async (d: (typeof docs)[number]) => {
      d.version++;
      d.open = true;
      await conn.sendNotification(DidOpenTextDocumentNotification.type, { textDocument: { uri: d.uri, languageId: 'typescript', version: d.version, text: d.text } });
    };
    const sample = async (at: number) => {
      const stats = await guard(conn.sendRequest<{ memory: { rssBytes: number; heapUsedBytes: number }; kvCache: { bytes: number; budgetBytes: number } | null }>('mgd/stats'));
      samples.push({ at, rssBytes: stats.memory.rssBytes, heapUsedBytes: stats.memory.heapUsedBytes, kvCacheBytes: stats.kvCache?.bytes ?? null, kvCacheBudgetBytes: stats.kvCache?.budgetBytes ?? null, openFds: openFds(child.pid!), children: descendants(child.pid!) });
    };
    // every tenth of the run, so the curve shows where memory settles (the 10% mark is the reference)
    const marks = new Set(Array.from({ length: 10 }, (_, k) => Math.round((completions * k) / 10)));
    for (let i = 0; i < completions; i++) {
      if (marks.has(i)) await sample(i);
      const d = pick(docs);
      if (!d.open) await open(d);
      // an edit at a random place. The text goes back to the fixture once a few hundred edits have grown it, so the
      // load stays the same all run: a document that only grows would make memory and latency grow with it and hide
      // (or fake) a leak.
      if (d.text.length > seedText.length + GROWTH_LIMIT) {
        d.text = seedText;
        d.version++;
        await conn.sendNotification(DidChangeTextDocumentNotification.type, { textDocument: { uri: d.uri, version: d.version }, contentChanges: [{ text: d.text }] });
      }
      const at = Math.floor(rand() * (d.text.length + 1));
      const insert = pick(EDITS);
      const start = positionAt(d.text, at);
      d.text = d.text.slice(0, at) + insert + d.text.slice(at);
      d.version++;
      await conn.sendNotification(DidChangeTextDocumentNotification.type, { textDocument: { uri: d.uri, version: d.version }, contentChanges: [{ range: { start, end: start }, text: insert }] });
      const position = positionAt(d.text, at + insert.length);
      if (i % 25 === 0) await conn.sendNotification('mgd/didFocus', { textDocument: { uri: d.uri }, position });
      const source = new CancellationTokenSource();
      const cancel = rand() < 0.5;
      const sent = performance.now();
      const request = conn.sendRequest(InlineCompletionRequest.type, { textDocument: { uri: d.uri }, position, context: { triggerKind: rand() < 0.8 ? InlineCompletionTriggerKind.Automatic : InlineCompletionTriggerKind.Invoked } }, source.token);
      // a typist's next keystroke arrives mid-decode: cancel after a random short delay
      if (cancel) setTimeout(() => source.cancel(), Math.floor(rand() * 20));
      try {
        await guard(request);
        if (cancel && source.token.isCancellationRequested) cancelled++;
        else latencies[Math.min(9, Math.floor((i / completions) * 10))]!.push(performance.now() - sent);
      } catch (e) {
        if (child.exitCode !== null) throw e; // the server died: the run is over
        if (source.token.isCancellationRequested) cancelled++;
        else failed++;
      }
      source.dispose();
      if (rand() < 0.02) {
        d.open = false;
        await conn.sendNotification(DidCloseTextDocumentNotification.type, { textDocument: { uri: d.uri } });
      }
    }
    await sample(completions);
    await guard(conn.sendRequest(ShutdownRequest.type));
    await conn.sendNotification(ExitNotification.type);
    await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
  } finally {
    conn.dispose();
    if (child.exitCode === null) child.kill();
  }

  const reference = samples.find((s) => s.at === Math.round(completions * 0.1)) ?? samples[0]!;
  const end = samples[samples.length - 1]!;
  const pct = (xs: number[], p: number) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length ? Math.round(s[Math.min(s.length - 1, Math.floor(s.length * p))]! * 10) / 10 : null;
  };
  return {
    bench: 'soak',
    completions,
    documents,
    seed: o.seed ?? 1,
    wallS: Math.round((performance.now() - t0) / 100) / 10,
    cancelled,
    failed,
    samples,
    // the end against the 10% mark: after warm-up, a run without leaks stays near 1
    rssEndOverWarm: Math.round((end.rssBytes / reference.rssBytes) * 1000) / 1000,
    heapEndOverWarm: Math.round((end.heapUsedBytes / reference.heapUsedBytes) * 1000) / 1000,
    fdGrowth: end.openFds !== null && reference.openFds !== null ? end.openFds - reference.openFds : null,
    childGrowth: end.children !== null && reference.children !== null ? end.children - reference.children : null,
    latencyByDecileMs: latencies.map((xs, decile) => ({ decile, answered: xs.length, p50: pct(xs, 0.5), p95: pct(xs, 0.95) })),
  };
}

/** Open descriptors of a process (Linux); null where /proc is not there. */
export function openFds(pid: number): number | null {
  try {
    return fs.readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return null;
  }
}

/** All descendant processes of `pid` (Linux, through /proc/PID/task/TID/children); null where /proc is not there. */
export function descendants(pid: number): number | null {
  const childrenOf = (p: number): number[] => {
    try {
      return fs.readdirSync(`/proc/${p}/task`).flatMap((tid) => {
        try {
          return fs.readFileSync(`/proc/${p}/task/${tid}/children`, 'utf8').split(/\s+/).filter(Boolean).map(Number);
        } catch {
          return [];
        }
      });
    } catch {
      return [];
    }
  };
  if (!fs.existsSync(`/proc/${pid}/task`)) return null;
  let count = 0;
  for (let queue = childrenOf(pid); queue.length; ) {
    const next = queue.pop()!;
    count++;
    queue.push(...childrenOf(next));
  }
  return count;
}
