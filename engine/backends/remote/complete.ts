/**
 * One completion on a serving engine: the same prompt as the local path (FIM, a trailing `.` healed), the
 * dereference monitor's question asked at each dot (segments.ts), the text back. What the local engine does per
 * token (masks, call arity, new/import/case sites) needs the logits, which a remote engine does not give: only the
 * member-after-dot monitor runs here, at segment granularity.
 *
 * The tokenizer must be the served model's (the prompt travels as token ids): `--model DIR` names a directory with
 * its tokenizer.json (weights are not read).
 */
import path from 'node:path';
import { Analyses } from '../../analysis/analyses.js';
import type { LanguageServerConfig } from '../../analysis/lsp-oracle.js';
import { buildPrompt } from '../../decode/fim.js';
import { oneLine } from '../../errors.js';
import { openModelDir } from '../../model/directory.js';
import { loadTokenizer } from '../../tokenizer/tokenizer.js';
import type { TextTokenizer } from '../../tokenizer/types.js';
import type { RemoteEngine } from './engines.js';
import { decodeSegmentwise, type SegmentMonitor } from './segments.js';

export interface RemoteCompletionRequest {
  prefix: string;
  suffix?: string;
  filePath?: string;
  workspace?: string;
  language?: string;
  monitors?: boolean;
  maxTokens?: number;
  /** 'line': stop at the end of the line; 'block': at a blank line; 'none'. */
  stop?: 'line' | 'block' | 'none';
  temperature?: number;
  seed?: number;
  signal?: AbortSignal;
}

const STOPS = { line: ['\n'], block: ['\n\n'], none: [] } as const;

export class RemoteCompleter {
  private constructor(
    readonly engine: RemoteEngine,
    readonly tokenizer: TextTokenizer,
    private readonly analyses: Analyses | null,
  ) {}

  static async load(engine: RemoteEngine, modelDir: string, o: { languageServers?: Record<string, LanguageServerConfig>; typescript?: 'native' | 'in-process'; monitors?: boolean } = {}) {
    const model = openModelDir(modelDir);
    const tokenizer = await loadTokenizer(model.tokenizerFile, { tokenizerConfig: model.tokenizerConfig, eosTokenIds: model.generation.eosTokenIds, bosTokenId: model.generation.bosTokenId });
    const analyses = o.monitors === false ? null : new Analyses({ languageServers: o.languageServers, typescript: o.typescript });
    return new RemoteCompleter(engine, tokenizer, analyses);
  }

  async complete(req: RemoteCompletionRequest) {
    const t0 = performance.now();
    const suffix = req.suffix ?? '';
    const prompt = await buildPrompt(this.tokenizer, { prefix: req.prefix, suffix, filePath: req.filePath, heal: (t) => t === '.' });
    const docPrefix = prompt.healed ? req.prefix.slice(0, req.prefix.length - prompt.healed.length) : req.prefix;
    const stats = { errors: 0, error: null as string | null, analysisMs: 0 };
    const monitor = this.monitorFor(req, docPrefix, suffix, stats);
    const r = await decodeSegmentwise(this.engine, {
      prompt: prompt.tokens,
      encode: (s) => this.tokenizer.encode(s),
      maxTokens: req.maxTokens ?? 64,
      stop: [...STOPS[req.stop ?? 'block']],
      temperature: req.temperature ?? 0,
      seed: req.seed,
      startsAtDot: prompt.healed === '.',
      monitor,
      signal: req.signal,
    });
    return {
      text: r.text,
      /** The prompt's end that the text re-spells first (a healed `.`), '' if none: the text is relative to the prefix without it. */
      healed: prompt.healed ?? '',
      tokens: r.tokens,
      promptTokens: prompt.tokens.length,
      stopReason: r.finish,
      timings: { analysisMs: round(stats.analysisMs), totalMs: round(performance.now() - t0) },
      monitor: { triggers: r.triggers, unmonitoredDots: r.unmonitoredDots, errors: stats.errors, ...(stats.error ? { error: stats.error } : {}) },
      remote: { engine: this.engine.name, url: this.engine.url, requests: r.requests },
    };
  }

  private monitorFor(req: RemoteCompletionRequest, docPrefix: string, suffix: string, stats: { errors: number; error: string | null; analysisMs: number }): SegmentMonitor | null {
    if (!this.analyses || req.monitors === false || !req.filePath) return null;
    const workspace = path.resolve(req.workspace ?? path.dirname(path.resolve(req.filePath)));
    const file = path.resolve(workspace, req.filePath);
    const analysis = this.analyses.for(file, workspace, req.language);
    if (!analysis) return null;
    return {
      namesAfterDot: async (generated) => {
        const text = docPrefix + generated + '.' + suffix;
        const t = performance.now();
        try {
          // an analysis failure leaves this dot unmonitored; it never stops the completion
          return await analysis.oracle.members(file, text, docPrefix.length + generated.length + 1);
        } catch (e) {
          stats.errors++;
          stats.error ??= oneLine(e);
          return null;
        } finally {
          stats.analysisMs += performance.now() - t;
        }
      },
    };
  }

  async dispose(): Promise<void> {
    await this.analyses?.dispose();
  }
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}
