/**
 * `mgd bench latency`: replays a typing session against the language server's completion path: a fixture file typed
 * character by character at a realistic interval, one automatic inline-completion request per keystroke, a newer
 * keystroke superseding the request still running (as editors do). Reports request-to-response latency of the
 * answered requests, and the fractions answered from the typed-through cache and cancelled. Server-side latency:
 * the JSON-RPC transport adds well under a millisecond locally.
 */
import fs from 'node:fs';
import path from 'node:path';
import { CancellationTokenSource } from 'vscode-languageserver';
import { TextDocument } from 'vscode-languageserver-textdocument';
import type { EngineOptions } from '../engine/engine.js';
import { packageRoot } from '../engine/paths.js';
import { CompletionRunner } from './lsp/completion-runner.js';

/**
 * Two passes over the same typing session, suggestions shown unchecked and checked (engine/verify), so the cost of
 * verification is measured on the same machine in the same run; plus the verification step's own time.
 */
export async function benchLatency(o: { engine: EngineOptions; file?: string; keystrokes?: number; intervalMs?: number }) {
  const unverified = await typingSession({ ...o, verify: false });
  const verified = await typingSession({ ...o, verify: true });
  const { verifyMs: _, ...before } = unverified;
  return { bench: 'latency', file: verified.file, keystrokes: verified.keystrokes, intervalMs: verified.intervalMs, unverified: before, verified };
}

async function typingSession(o: { engine: EngineOptions; file?: string; keystrokes?: number; intervalMs?: number; verify: boolean }) {
  const file = o.file ?? path.join(packageRoot(), 'fixtures/repos/monitor-cases/src/model.ts');
  const text = fs.readFileSync(file, 'utf8');
  const keystrokes = Math.min(o.keystrokes ?? 200, text.length);
  const interval = o.intervalMs ?? 80;
  const runner = new CompletionRunner(o.engine, () => {});
  runner.workspace = path.dirname(path.dirname(file));
  const t0 = performance.now();
  await runner.load();
  const loadMs = performance.now() - t0;
  const start = text.length - keystrokes; // type the last `keystrokes` characters of the file
  const uri = `file://${file}`;
  const latencies: number[] = [];
  const verifyMs: number[] = [];
  const statuses: Record<string, number> = {};
  let cancelled = 0;
  let answered = 0;
  let pending: { source: CancellationTokenSource; done: Promise<void> } | null = null;
  for (let k = 1; k <= keystrokes; k++) {
    const doc = TextDocument.create(uri, 'typescript', k, text.slice(0, start + k) + '\n');
    pending?.source.cancel(); // superseded by this keystroke
    const source = new CancellationTokenSource();
    const sent = performance.now();
    const done = runner.complete(doc, doc.positionAt(start + k), source.token, { automatic: true, verify: o.verify }).then((r) => {
      if (r === null && source.token.isCancellationRequested) cancelled++;
      else if (r !== null) {
        answered++;
        latencies.push(performance.now() - sent);
        if (r.result.tokens > 0 && r.result.verify.status !== 'off') {
          verifyMs.push(r.result.verify.ms);
          statuses[r.result.verify.status] = (statuses[r.result.verify.status] ?? 0) + 1;
        }
      }
    });
    pending = { source, done };
    await new Promise((r) => setTimeout(r, interval));
  }
  await pending?.done;
  await runner.dispose();
  const pct = (xs: number[], p: number) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length ? Math.round(s[Math.min(s.length - 1, Math.floor(s.length * p))]! * 10) / 10 : null;
  };
  return {
    file: path.relative(packageRoot(), file),
    keystrokes,
    intervalMs: interval,
    loadMs: Math.round(loadMs),
    answered,
    latencyP50Ms: pct(latencies, 0.5),
    latencyP95Ms: pct(latencies, 0.95),
    verifyMs: { p50: pct(verifyMs, 0.5), p95: pct(verifyMs, 0.95), statuses },
    cachedFraction: Math.round((runner.stats.typedThrough / keystrokes) * 1000) / 1000,
    cancelledFraction: Math.round((cancelled / keystrokes) * 1000) / 1000,
    suppressedFraction: Math.round((runner.stats.suppressed / keystrokes) * 1000) / 1000,
  };
}
