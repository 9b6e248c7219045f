/**
 * Runs completions for the LSP features: cursor -> engine request, with LSP cancellation mapped to the engine's
 * AbortSignal and supersession per document (a newer request for the same document aborts the older one, whose
 * decoding stops within one step). The engine is loaded lazily and once; if it fails to load, every request answers
 * empty and the reason is logged, while the server keeps running.
 */
import { fileURLToPath } from 'node:url';
import type { CancellationToken, Position } from 'vscode-languageserver';
import type { TextDocument } from 'vscode-languageserver-textdocument';
import { Engine, MONITOR_KINDS, type CompletionRequest, type CompletionResult, type EngineOptions, type MonitorKind } from '../../engine/engine.js';
import { CancelledError, oneLine } from '../../engine/errors.js';
import type { BackendInfo } from '../../engine/backends/backend.js';
import { hubCacheDir, modelLabel, needsPull, pullModel } from '../../engine/model/hub.js';
import { inCommentOrString } from '../../engine/postprocess/in-comment-or-string.js';
import type { Shown } from '../../engine/postprocess/postprocess.js';
import { RemoteCompletions, type RemoteBackendOptions } from './remote-completions.js';

/** Documents whose last shown completion is kept for typed-through reuse. */
const SHOWN_LIMIT = 64;

export interface RunnerSettings {
  maxTokens: number;
  monitors: boolean;
  /** Each monitor on or off (with `monitors` on); every kind is present. */
  monitorKinds: Record<MonitorKind, boolean>;
  /** Repository-context budget in tokens; null: the engine's default (a share of the prompt). 0: no context. */
  contextTokens: number | null;
}

export function defaultSettings(): RunnerSettings {
  return { maxTokens: 48, monitors: true, monitorKinds: Object.fromEntries(MONITOR_KINDS.map((k) => [k, true])) as Record<MonitorKind, boolean>, contextTokens: null };
}

export type { Shown };

export class CompletionRunner {
  private engine: Promise<Engine> | null = null;
  /** The engine once loaded (for statistics, which never wait for a load). */
  private loaded: Engine | null = null;
  private readonly inFlight = new Map<string, AbortController>();
  workspace: string | null = null;
  settings: RunnerSettings = defaultSettings();

  /** Completions from a serving engine (`serve --backend remote`), the local model answering when it fails. */
  private readonly remote: RemoteCompletions | null;

  private readonly modelFromCommandLine: boolean;

  constructor(
    private engineOptions: EngineOptions,
    private readonly log: (message: string) => void,
    remote?: RemoteBackendOptions,
  ) {
    this.modelFromCommandLine = engineOptions.model !== undefined;
    this.remote = remote ? new RemoteCompletions(remote, engineOptions, log) : null;
  }

  /**
   * The model named by the client (initializationOptions or configuration `model`: a path or a Hugging Face id), for
   * editors that configure the server rather than its command line. It applies only where the command line named
   * none, and only before the model starts loading; afterwards it is logged as taking effect at the next start.
   */
  useModel(model: string): void {
    if (this.engineOptions.model === model) return;
    if (this.engine || this.modelFromCommandLine) {
      this.log(`mgd: model "${model}" takes effect when the server starts again (${this.engine ? 'a model is loaded already' : 'the command line names one'})`);
      return;
    }
    this.engineOptions = { ...this.engineOptions, model };
  }

  /** Hears a pull's progress (see load), for `$/progress`; set whenever, read at each report. */
  onPull: ((percent: number, message: string) => void) | null = null;

  /**
   * Starts loading the model (idempotent); resolves to null if it cannot be loaded. A Hugging Face id that is not in
   * the cache is pulled first (resumable; `onPull` hears its progress).
   */
  load(): Promise<Engine | null> {
    this.engine ??= this.pullIfNeeded().then(() => Engine.load(this.engineOptions)).then((e) => {
      e.onWarning = this.log;
      this.loaded = e;
      return e;
    });
    return this.engine.catch((e: unknown) => {
      this.log(`mgd: the model could not be loaded, completions are off: ${oneLine(e)}`);
      return null;
    });
  }

  /** Whether load() will pull the model first (an id not in the Hugging Face cache). */
  pullPending(): boolean {
    const model = this.engineOptions.model;
    return !this.engine && !!model && needsPull(model);
  }

  private async pullIfNeeded(): Promise<void> {
    const model = this.engineOptions.model;
    if (!model || !needsPull(model)) return;
    this.log(`mgd: ${model} is not in the Hugging Face cache (${hubCacheDir()}); pulling it`);
    let last = 0;
    const r = await pullModel(model, {
      onProgress: (p) => {
        const now = Date.now();
        if (!p.file || !p.total || (p.done < p.total && now - last < 250)) return;
        last = now;
        this.onPull?.(Math.floor(((p.files + p.done / p.total) / Math.max(1, p.of)) * 100), `pulling ${model}: ${p.file} (${p.files + 1}/${p.of})`);
      },
    });
    this.log(`mgd: pulled ${r.id}@${r.commit.slice(0, 12)} into ${r.dir}`);
  }

  /** The last completion shown per document, for typed-through reuse (valid while the cursor line's rest is the same). */
  private readonly shown = new Map<string, { prefix: string; lineRest: string; shown: Shown; result: CompletionResult }>();
  readonly stats = { requests: 0, typedThrough: 0, cancelled: 0, suppressed: 0, accepted: 0, acceptedPartial: 0, lastTokens: 0, lastMonitorTriggers: 0, lastPromptTokens: 0, lastReusedTokens: 0, prefetches: 0, prefetchedTokens: 0 };

  /** The session's counters and, once the model is loaded, its KV cache's (`kvCache`, null before). */
  statistics(): typeof this.stats & { kvCache: ReturnType<Engine['kvStats']> | null; model: { name: string; dir: string } | null; backend: BackendInfo | null; memory: { rssBytes: number; heapUsedBytes: number }; remote?: RemoteCompletions['stats'] & { engine: string; url: string } } {
    const remote = this.remote && { ...this.remote.stats, engine: this.remote.options.engine, url: this.remote.options.url };
    // the backend running now (onnx after a lost GPU device, whatever was asked for), null before the model loads
    const backend = this.loaded ? { ...this.loaded.backend.info } : null;
    const model = this.loaded ? { name: modelLabel(this.loaded.model.dir), dir: this.loaded.model.dir } : null;
    // this process's memory, for a client watching a long session (mgd bench soak)
    const { rss, heapUsed } = process.memoryUsage();
    return { ...this.stats, kvCache: this.loaded?.kvStats() ?? null, model, backend, memory: { rssBytes: rss, heapUsedBytes: heapUsed }, ...(remote ? { remote } : {}) };
  }

  /**
   * A completion at `position`: the shown text (post-processed), the cursor's offset, the end of its line, and how
   * many characters after the cursor the text replaces. `automatic`: typed, not invoked (none in comments or strings).
   * `replace: false` when the answer must insert at the cursor (an inline item extending the editor's selection).
   * `candidates`: how many distinct clean suggestions the checker should look for (inline items the editor cycles);
   * `verify: false` shows the suggestion unchecked (the latency bench's baseline).
   */
  async complete(
    doc: TextDocument,
    position: Position,
    token: CancellationToken,
    opts: { automatic?: boolean; replace?: boolean; candidates?: number; verify?: boolean } = {},
  ): Promise<{ result: CompletionResult; offset: number; lineEnd: number; replace: number } | null> {
    this.stats.requests++;
    // with a serving engine the local model loads only if the engine fails
    const engine = this.remote ? null : await this.load();
    if ((!this.remote && !engine) || token.isCancellationRequested) return null;
    const canReplace = opts.replace ?? true;
    const text = doc.getText();
    const offset = doc.offsetAt(position);
    let lineEnd = text.indexOf('\n', offset);
    if (lineEnd < 0) lineEnd = text.length;
    const prefix = text.slice(0, offset);
    const lineRest = text.slice(offset, lineEnd);
    // Typed through: the user typed the start of the completion last shown here; answer the rest without the model.
    const last = this.shown.get(doc.uri);
    if (last && prefix.startsWith(last.prefix) && lineRest === last.lineRest && (canReplace || last.shown.replace === 0)) {
      const typed = prefix.slice(last.prefix.length);
      if (typed.length > 0 && typed.length < last.shown.text.length && last.shown.text.startsWith(typed)) {
        this.stats.typedThrough++;
        const rest = last.shown.text.slice(typed.length);
        return { result: { ...last.result, text: rest, candidates: undefined, tokens: 0, timings: { ...last.result.timings, prefillMs: 0, decodeMs: 0, totalMs: 0 } }, offset, lineEnd, replace: last.shown.replace };
      }
    }
    const filePath = doc.uri.startsWith('file:') ? fileURLToPath(doc.uri) : undefined;
    if (opts.automatic && inCommentOrString(prefix, filePath)) {
      this.stats.suppressed++;
      return null;
    }
    const previous = this.inFlight.get(doc.uri);
    previous?.abort(); // superseded: its decoding stops at the next step
    const ac = new AbortController();
    this.inFlight.set(doc.uri, ac);
    const sub = token.onCancellationRequested(() => ac.abort());
    try {
      const suffix = text.slice(offset);
      const result = await this.run(engine, {
        prefix,
        // in an editor the rest of the cursor's line matters (`foo(|)`); post-processing drops what it duplicates
        suffix,
        filePath,
        workspace: this.workspace ?? undefined,
        maxTokens: this.settings.maxTokens,
        monitors: this.settings.monitors,
        monitorKinds: { ...this.settings.monitorKinds },
        ...this.contextSetting(),
        stop: 'block',
        replace: canReplace,
        candidates: opts.candidates,
        verify: opts.verify,
        signal: ac.signal,
      });
      if (result.stopReason === 'cancelled') {
        this.stats.cancelled++;
        return null;
      }
      this.stats.lastTokens = result.tokens;
      this.stats.lastMonitorTriggers = result.monitor.triggers;
      this.stats.lastPromptTokens = result.cache.promptTokens;
      this.stats.lastReusedTokens = result.cache.reusedTokens;
      const shown: Shown = { text: result.text, replace: result.replace };
      const shownResult = result;
      this.shown.delete(doc.uri); // re-insert: the map's order is recency, the oldest goes first
      this.shown.set(doc.uri, { prefix, lineRest, shown, result: shownResult });
      if (this.shown.size > SHOWN_LIMIT) this.shown.delete(this.shown.keys().next().value!);
      return { result: shownResult, offset, lineEnd, replace: shown.replace };
    } catch (e) {
      if (e instanceof CancelledError) return null;
      this.log(`mgd: completion failed: ${oneLine(e)}`);
      return null;
    } finally {
      sub.dispose();
      if (this.inFlight.get(doc.uri) === ac) this.inFlight.delete(doc.uri);
    }
  }

  /** The serving engine's name and URL (`serve --backend remote`), or null for the local model. */
  get servingEngine(): string | null {
    return this.remote ? `${this.remote.options.engine} at ${this.remote.options.url}` : null;
  }

  /** Loads what the serving-engine path needs (the tokenizer); failures show on the first request. */
  async warmUpRemote(): Promise<void> {
    await this.remote?.warmUp().catch(() => undefined);
  }

  /** The contextTokens setting as request fields: null, the engine's default budget; 0, no repository context at all. */
  private contextSetting(): Pick<CompletionRequest, 'context' | 'contextTokens'> {
    const { contextTokens } = this.settings;
    return contextTokens === 0 ? { context: [] } : contextTokens !== null ? { contextTokens } : {};
  }

  /** The serving engine when there is one (the local model if it fails), else the local engine. */
  private async run(engine: Engine | null, req: CompletionRequest): Promise<CompletionResult> {
    if (engine) return engine.complete(req);
    try {
      return await this.remote!.complete(req);
    } catch (e) {
      if (e instanceof CancelledError) throw e;
      const local = await this.load();
      if (!local) throw e;
      return local.complete(req);
    }
  }

  /**
   * Background prefill for a document the user is looking at (opened, or focused in the editor): the KV of the prompt a
   * completion at `position` would use, repository context first, lands in the engine's prefix cache, so the first
   * request there prefills only the text near the cursor. Without a position, the start of the file: the stable part
   * (context blocks, file header) is what a later request at any position shares. Prefetches queue behind each other
   * (one whose prompt is already cached costs a lookup); any completion request cancels them (the engine's rule).
   * Never throws; resolves to the tokens prefilled.
   */
  async prefetch(doc: TextDocument, position?: Position): Promise<number> {
    if (this.remote) return 0; // the serving engine keeps its own prefix cache
    // a didOpen with a uri or text of the wrong type still makes a document: nothing to prepare for it
    if (typeof doc.uri !== 'string' || typeof doc.getText() !== 'string') return 0;
    try {
      const engine = await this.load();
      if (!engine) return 0;
      const text = doc.getText();
      const offset = position ? doc.offsetAt(position) : 0;
      const filePath = doc.uri.startsWith('file:') ? fileURLToPath(doc.uri) : undefined;
      const n = await engine.prefetch({
        prefix: text.slice(0, offset),
        suffix: text.slice(offset),
        filePath,
        workspace: this.workspace ?? undefined,
        maxTokens: this.settings.maxTokens,
        ...this.contextSetting(),
      });
      if (n > 0) {
        this.stats.prefetches++;
        this.stats.prefetchedTokens += n;
      }
      return n;
    } catch (e) {
      // callers fire and forget: a rejection here would be unhandled
      this.log(`mgd: prefetch skipped: ${oneLine(e)}`);
      return 0;
    }
  }

  async dispose(): Promise<void> {
    for (const ac of this.inFlight.values()) ac.abort();
    await this.remote?.dispose();
    const e = await this.engine?.catch(() => null);
    await e?.dispose();
  }
}
