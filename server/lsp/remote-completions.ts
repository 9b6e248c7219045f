/**
 * Completions from a serving engine (vLLM, SGLang, llama.cpp's server) for the language server: `mgd serve
 * --backend remote`. The engine's segment-wise protocol (engine/backends/remote) answers in the engine's own result
 * shape; this adapts it to the local engine's, so the runner's post-processing and statistics work unchanged. When the
 * serving engine fails (unreachable, an HTTP error, a time-out) the request is answered by the local model instead:
 * the editor keeps getting completions, and the log says why once per distinct failure.
 */
import type { CompletionRequest, CompletionResult, EngineOptions } from '../../engine/engine.js';
import { createRemoteEngine, type RemoteEngineName } from '../../engine/backends/remote/engines.js';
import { RemoteCompleter } from '../../engine/backends/remote/complete.js';
import { CancelledError, oneLine } from '../../engine/errors.js';
import { embeddedModelDir } from '../../engine/paths.js';
import { postProcess } from '../../engine/postprocess/postprocess.js';

export interface RemoteBackendOptions {
  engine: RemoteEngineName;
  url: string;
  token?: string;
}

/** The remote engine's finish reasons in the local engine's words (a stop string is the block's end: 'block'). */
const FINISH = { stop: 'block', eos: 'eos', length: 'length', cancelled: 'cancelled' } as const;

export class RemoteCompletions {
  private completer: Promise<RemoteCompleter> | null = null;
  private lastFailure = '';
  readonly stats = { requests: 0, engineRequests: 0, failures: 0 };

  constructor(
    readonly options: RemoteBackendOptions,
    private readonly engineOptions: EngineOptions,
    private readonly log: (message: string) => void,
  ) {}

  async warmUp(): Promise<void> {
    await this.load();
  }

  private load(): Promise<RemoteCompleter> {
    // the served model's tokenizer: --model names its directory (weights are not read), else the embedded model's
    this.completer ??= RemoteCompleter.load(createRemoteEngine(this.options), this.engineOptions.model ?? embeddedModelDir(), {
      languageServers: this.engineOptions.languageServers,
      typescript: this.engineOptions.typescript,
    });
    return this.completer;
  }

  /**
   * One completion on the serving engine. Throws CancelledError when cancelled; any other failure is logged and
   * rethrown for the caller's fallback.
   */
  async complete(req: CompletionRequest): Promise<CompletionResult> {
    this.stats.requests++;
    try {
      const completer = await this.load();
      const monitors = req.monitors !== false && req.monitorKinds?.dereference !== false;
      const r = await completer.complete({
        prefix: req.prefix,
        suffix: req.suffix,
        filePath: req.filePath,
        workspace: req.workspace,
        language: req.language,
        monitors,
        maxTokens: req.maxTokens,
        stop: req.stop === 'line' || req.stop === 'none' ? req.stop : 'block',
        temperature: req.temperature,
        seed: req.seed,
        signal: req.signal,
      });
      this.stats.engineRequests += r.remote.requests;
      if (r.stopReason === 'cancelled') throw new CancelledError();
      this.lastFailure = '';
      // the local engine's text continues the prefix; the remote one re-spells a healed `.` first
      const raw = r.healed && r.text.startsWith(r.healed) ? r.text.slice(r.healed.length) : r.text;
      const stopReason = FINISH[r.stopReason];
      // the same post-processing as the local engine's answers (one pipeline for every door)
      const shown = postProcess(raw, { prefix: req.prefix, suffix: req.suffix ?? '', filePath: req.filePath, stopReason, replace: req.replace ?? true });
      return {
        text: shown.text,
        replace: shown.replace,
        raw,
        tokens: r.tokens,
        promptTokens: r.promptTokens,
        stopReason,
        // the engine's own timings and cache are its business: only the total is ours to see
        timings: { loadMs: 0, analysisMs: r.timings.analysisMs, prefillMs: 0, decodeMs: 0, totalMs: r.timings.totalMs },
        monitor: { triggers: r.monitor.triggers, maskedSteps: 0, interventions: 0, forcedTokens: 0, errors: r.monitor.errors, ...(r.monitor.error ? { error: r.monitor.error } : {}) },
        cache: { promptTokens: r.promptTokens, reusedTokens: 0, source: 'cold', spliceMs: 0, bytes: 0 },
        promptMode: 'fim',
        // (no branch points to try from a serving engine's answer: not verified)
        verify: { status: 'off', candidates: 0, checked: 0, chosen: -1, ms: 0, added: 0, exhausted: false },
        context: { blocks: 0, tokens: 0 },
      };
    } catch (e) {
      if (e instanceof CancelledError || req.signal?.aborted) throw new CancelledError();
      this.stats.failures++;
      const message = `mgd: the serving engine (${this.options.engine} at ${this.options.url}) failed: ${oneLine(e)}; answering from the local model`;
      if (message !== this.lastFailure) this.log(message);
      this.lastFailure = message;
      throw e;
    }
  }

  async dispose(): Promise<void> {
    const c = await this.completer?.catch(() => null);
    await c?.dispose();
  }
}
