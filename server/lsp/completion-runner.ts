/**
 * Runs completions for the LSP features: cursor -> engine request, with LSP cancellation mapped to the engine's
 * AbortSignal and supersession per document (a newer request for the same document aborts the older one, whose
 * decoding stops within one step). The engine is loaded lazily and once; if it fails to load, every request answers
 * empty and the reason is logged, while the server keeps running.
 */
import { fileURLToPath } from 'node:url';
import type { CancellationToken, Position } from 'vscode-languageserver';
import type { TextDocument } from 'vscode-languageserver-textdocument';
import { Engine, type CompletionResult, type EngineOptions } from '../../engine/engine.js';
import { CancelledError, oneLine } from '../../engine/errors.js';
import { inCommentOrString } from '../postprocess/in-comment-or-string.js';
import { trimSuffixOverlap } from '../postprocess/suffix-overlap.js';

/** Documents whose last shown completion is kept for typed-through reuse. */
const SHOWN_LIMIT = 64;

export interface RunnerSettings {
  maxTokens: number;
  monitors: boolean;
}

export class CompletionRunner {
  private engine: Promise<Engine> | null = null;
  private readonly inFlight = new Map<string, AbortController>();
  workspace: string | null = null;
  settings: RunnerSettings = { maxTokens: 48, monitors: true };

  constructor(
    private readonly engineOptions: EngineOptions,
    private readonly log: (message: string) => void,
  ) {}

  /** Starts loading the model (idempotent); resolves to null if it cannot be loaded. */
  load(): Promise<Engine | null> {
    this.engine ??= Engine.load(this.engineOptions).then((e) => {
      e.onWarning = this.log;
      return e;
    });
    return this.engine.catch((e: unknown) => {
      this.log(`mgd: the model could not be loaded, completions are off: ${oneLine(e)}`);
      return null;
    });
  }

  /** The last completion shown per document, for typed-through reuse. */
  private readonly shown = new Map<string, { prefix: string; text: string; result: CompletionResult }>();
  readonly stats = { requests: 0, typedThrough: 0, cancelled: 0, suppressed: 0, accepted: 0, acceptedPartial: 0, lastTokens: 0, lastMonitorTriggers: 0 };

  async complete(
    doc: TextDocument,
    position: Position,
    token: CancellationToken,
    automatic = false,
  ): Promise<{ result: CompletionResult; offset: number; lineEnd: number } | null> {
    this.stats.requests++;
    const engine = await this.load();
    if (!engine || token.isCancellationRequested) return null;
    const full = doc.getText();
    const at = doc.offsetAt(position);
    let end = full.indexOf('\n', at);
    if (end < 0) end = full.length;
    // Typed through: the user typed the start of the completion last shown here; answer the rest without the model.
    const last = this.shown.get(doc.uri);
    const prefixNow = full.slice(0, at);
    if (last && prefixNow.startsWith(last.prefix)) {
      const typed = prefixNow.slice(last.prefix.length);
      if (typed.length > 0 && typed.length < last.text.length && last.text.startsWith(typed)) {
        this.stats.typedThrough++;
        const text = last.text.slice(typed.length);
        return { result: { ...last.result, text, tokens: 0, timings: { ...last.result.timings, prefillMs: 0, decodeMs: 0, totalMs: 0 } }, offset: at, lineEnd: end };
      }
    }
    const filePathForCheck = doc.uri.startsWith('file:') ? fileURLToPath(doc.uri) : undefined;
    if (automatic && inCommentOrString(prefixNow, filePathForCheck)) {
      this.stats.suppressed++;
      return null;
    }
    const previous = this.inFlight.get(doc.uri);
    previous?.abort(); // superseded: its decoding stops at the next step
    const ac = new AbortController();
    this.inFlight.set(doc.uri, ac);
    const sub = token.onCancellationRequested(() => ac.abort());
    try {
      const text = doc.getText();
      const offset = doc.offsetAt(position);
      let lineEnd = text.indexOf('\n', offset);
      if (lineEnd < 0) lineEnd = text.length;
      const filePath = doc.uri.startsWith('file:') ? fileURLToPath(doc.uri) : undefined;
      const result = await engine.complete({
        prefix: text.slice(0, offset),
        // in an editor the rest of the cursor's line matters (`foo(|)`); post-processing drops what it duplicates
        suffix: text.slice(offset),
        filePath,
        workspace: this.workspace ?? undefined,
        maxTokens: this.settings.maxTokens,
        monitors: this.settings.monitors,
        stop: 'block',
        signal: ac.signal,
      });
      if (result.stopReason === 'cancelled') {
        this.stats.cancelled++;
        return null;
      }
      this.stats.lastTokens = result.tokens;
      this.stats.lastMonitorTriggers = result.monitor.triggers;
      const shownText = trimSuffixOverlap(result.text, text.slice(offset, lineEnd));
      const shownResult = { ...result, text: shownText };
      this.shown.delete(doc.uri); // re-insert: the map's order is recency, the oldest goes first
      this.shown.set(doc.uri, { prefix: text.slice(0, offset), text: shownText, result: shownResult });
      if (this.shown.size > SHOWN_LIMIT) this.shown.delete(this.shown.keys().next().value!);
      return { result: shownResult, offset, lineEnd };
    } catch (e) {
      if (e instanceof CancelledError) return null;
      this.log(`mgd: completion failed: ${oneLine(e)}`);
      return null;
    } finally {
      sub.dispose();
      if (this.inFlight.get(doc.uri) === ac) this.inFlight.delete(doc.uri);
    }
  }

  async dispose(): Promise<void> {
    for (const ac of this.inFlight.values()) ac.abort();
    const e = await this.engine?.catch(() => null);
    await e?.dispose();
  }
}
