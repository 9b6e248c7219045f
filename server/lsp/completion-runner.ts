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

  async complete(doc: TextDocument, position: Position, token: CancellationToken): Promise<{ result: CompletionResult; offset: number; lineEnd: number } | null> {
    const engine = await this.load();
    if (!engine || token.isCancellationRequested) return null;
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
        suffix: text.slice(lineEnd),
        filePath,
        workspace: this.workspace ?? undefined,
        maxTokens: this.settings.maxTokens,
        monitors: this.settings.monitors,
        stop: 'block',
        signal: ac.signal,
      });
      if (result.stopReason === 'cancelled') return null;
      return { result, offset, lineEnd };
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
