/**
 * The engine API: one object that loads a model and answers completion requests. The CLI, the HTTP API and the
 * language server are three doors into this class; none of them knows about backends, tokenizers or caches.
 *
 * Requests run one at a time (one model, and the CPU backend already uses every core); a request waiting behind
 * another can be cancelled before it starts. The KV cache of the last prompt and its completion stays resident, so
 * the next request (typically the same file one keystroke later) prefills only what changed after the longest common
 * token prefix.
 */
import { BadInputError, CancelledError, oneLine } from './errors.js';
import type { Backend, BackendName, WeightFormat } from './backends/backend.js';
import { selectBackend } from './backends/select.js';
import { openModelDir, type ModelDir } from './model/directory.js';
import { loadTokenizer } from './tokenizer/tokenizer.js';
import type { TextTokenizer } from './tokenizer/types.js';
import { buildPrompt, type FimOrder, type Prompt, type PromptInput } from './decode/fim.js';
import { generate } from './decode/generate.js';
import type { LogitsProcessor } from './decode/logits-processor.js';
import type { StopMode } from './decode/stop.js';
import { cacheRoot, embeddedModelDir } from './paths.js';
import { Analyses } from './analysis/analyses.js';
import type { CheckDiagnostic, TypeLocation } from './analysis/oracle.js';
import type { LanguageServerConfig } from './analysis/lsp-oracle.js';
import { TokenMasks } from './decode/mask/token-mask.js';
import { VocabTrie } from './decode/mask/vocab-trie.js';
import { DereferenceMonitor } from './monitors/dereference.js';
import { CompletionSiteMonitor, IMPORT_NAMES, NEW_CLASS, SWITCH_ENUM, type SiteOracle } from './monitors/completion-site.js';
import type { Monitor } from './monitors/monitor.js';
import { BracketProfiles, CallArityMonitor } from './monitors/call-arity.js';
import { CallableMonitor, CallOpeners } from './monitors/callable.js';
import { NameStarts, ScopeNamesMonitor } from './monitors/scope-names.js';
import crypto from 'node:crypto';
import path from 'node:path';
import { KvManager, type KvStats } from './cache/kv-manager.js';
import { RepoIndex } from './context/repo-index.js';
import { retrieveContext, type ContextBlock } from './context/retrieve.js';
import { postProcess } from './postprocess/postprocess.js';
import { cutsOpenForSuffix, lineClosers, strayClosersAfter } from './postprocess/balance-brackets.js';
import { BracketDisciplineMonitor, BracketTokens } from './monitors/bracket-discipline.js';
import { knownSyntax } from './postprocess/bracket-lexer.js';
import { sensibleCuts, verifySuggestion, type Candidate, type VerifyReport } from './verify/verify.js';
import { commonDiagnostics, newDiagnostics, parseDiagnostics, syntaxErrorsFrom } from './verify/diagnostics.js';
import { EndingTokens, LineEndMonitor } from './monitors/line-end.js';

export interface EngineOptions {
  /** Model directory (Hugging Face layout); default: the embedded model. */
  model?: string;
  backend?: BackendName | 'auto';
  weights?: WeightFormat;
  threads?: number;
  /** Language servers by language for the generic LSP oracle, over the built-in ones (see analysis/language-servers). */
  languageServers?: Record<string, LanguageServerConfig>;
  /** TypeScript/JavaScript oracle: TypeScript 7's native server (default where installed) or typescript@6 in process. */
  typescript?: 'native' | 'in-process';
  /**
   * The managed KV cache: byte budget of its blocks, and whether what the engine learns is persisted between runs
   * under MGD_CACHE_DIR (the KV cache's hottest blocks, and the workspaces' repository indexes).
   */
  kvCache?: { budgetBytes?: number; persist?: boolean };
}

export interface CompletionRequest {
  prefix: string;
  suffix?: string;
  /** The file being completed, relative to `workspace` (or absolute). */
  filePath?: string;
  /** Workspace root for analysis (tsconfig discovery); default: the file's directory. */
  workspace?: string;
  language?: string;
  /** Monitor-guided decoding (default on where a type oracle exists for the file's language). */
  monitors?: boolean;
  /** Turn single monitors off by kind (MONITOR_KINDS): e.g. { 'call-arity': false }. */
  monitorKinds?: Partial<Record<MonitorKind, boolean>>;
  /** Prompt format: FIM (with the suffix) or left-to-right prefix; default: what the model declares. */
  fim?: boolean;
  /** FIM order (decode/fim.ts's FimOrder); default: what the model declares (`mgd_prompt`). */
  fimOrder?: FimOrder;
  maxTokens?: number;
  /** How far a completion may run: to the end of the line, of the block, or only maxTokens. Default 'block'. */
  stop?: StopMode;
  stopStrings?: string[];
  temperature?: number;
  topP?: number;
  seed?: number;
  /** Logits processors (the monitors) for this request. */
  processors?: LogitsProcessor[];
  /**
   * Repository context blocks placed before the file (most stable first). Default: retrieved from the workspace's
   * index (engine/context) when `workspace` is given; [] for none.
   */
  context?: Array<{ path: string; text: string }>;
  /** Token budget for repository context (default: 30% of the prompt's room, and only what is used). */
  contextTokens?: number;
  /**
   * Whether the answer may replace closers after the cursor on its line (`console.log(|)` + `x);` replaces the `)`);
   * false when it must insert at the cursor (an inline item extending the editor's selection). Default true.
   */
  replace?: boolean;
  signal?: AbortSignal;
  /**
   * Check before showing (engine/verify): the checker judges the suggestion on the document it would make and, when
   * it adds diagnostics, alternatives and clean prefixes are tried. Default: on where monitors run and the file is
   * TypeScript/JavaScript.
   */
  verify?: boolean;
  /** The verification's time budget in milliseconds (default DEFAULT_VERIFY_MS). */
  verifyMs?: number;
  /** How many distinct clean candidates to look for (the LSP door asks for up to three). Default 1. */
  candidates?: number;
  /** Streaming: the model's text as it is generated (before post-processing, which needs the whole answer). */
  onText?: (delta: string) => void;
}

export interface CompletionResult {
  /** What a user is shown: the model's text post-processed (engine/postprocess), the same for every door. */
  text: string;
  /** Characters after the cursor, on its line, that `text` replaces (0: a plain insertion). */
  replace: number;
  /** The model's text before post-processing. */
  raw: string;
  tokens: number;
  promptTokens: number;
  /** Why the shown text ends: the decode's stop (StopReason), or 'verify-cut' when the verifier showed a prefix. */
  stopReason: string;
  timings: { loadMs: number; analysisMs: number; prefillMs: number; decodeMs: number; totalMs: number };
  monitor: {
    triggers: number;
    maskedSteps: number;
    interventions: number;
    /** Tokens appended without a model step because a monitor left one continuation (fast-forward). */
    forcedTokens: number;
    /** Analysis failures (crash, timeout): decoding went on unmonitored at those sites. */
    errors: number;
    /** Which oracle answered (`typescript`, `lsp:node`...), absent when no monitor applied. */
    oracle?: string;
    /** The first failure's message, when errors > 0. */
    error?: string;
  };
  cache: {
    promptTokens: number;
    reusedTokens: number;
    /** Where the reused prefix came from: the last request's sequence, the prefix cache's blocks, or nowhere. */
    source: 'resident' | 'prefix-cache' | 'cold';
    /** Time to find and gather a prefix from the prefix cache. */
    spliceMs: number;
    /** KV bytes held after the request (prefix cache + resident sequence). */
    bytes: number;
  };
  promptMode: 'fim' | 'prefix';
  /** What the checker said and what it cost (status 'off' where nothing checks this file). */
  verify: VerifyReport;
  /** Distinct clean candidates, best first (the first is `text` when it is clean); only with `candidates` > 1. */
  candidates?: Candidate[];
  /** Repository context offered to the prompt (blocks) and how many tokens of it fit. */
  context: { blocks: number; tokens: number };
}

const DEFAULT_MAX_TOKENS = 64;
/**
 * The verification budget: a clean suggestion costs one check (a few ms on a small file); a dirty one spends at
 * most this on alternatives and prefixes.
 */
export const DEFAULT_VERIFY_MS = 150;
/** Alternatives decoded per request at most (each costs model steps; prefixes cost only checks). */
const MAX_ALTERNATIVES = 4;
/** Documents longer than this are not parsed per line end (a parse of a few hundred kB costs tens of ms). */
const LINE_FIT_MAX_CHARS = 400_000;
/** How long retrieval waits for the oracle's receiver type (a language server still starting answers too late). */
const RECEIVER_TYPE_MS = 250;

/** The monitors, by the kind names settings and JSON use. */
export const MONITOR_KINDS = ['dereference', 'call-arity', 'callable', 'scope-names', 'new-class', 'import-names', 'switch-enum', 'brackets', 'line-end'] as const;
export type MonitorKind = (typeof MONITOR_KINDS)[number];

export class Engine {
  private readonly kv: KvManager;
  private readonly indexes = new Map<string, RepoIndex>();
  private readonly prefetches = new Set<AbortController>();
  private readonly unwatch: (() => void)[] = [];
  private readonly persist: boolean;
  private readonly analyses: Analyses;
  private masks: TokenMasks | null = null;
  private readonly healMasks = new Map<string, Uint32Array>();
  private brackets: BracketProfiles | null = null;
  private openers: CallOpeners | null = null;
  private bracketTokens: BracketTokens | null = null;
  private endings: EndingTokens | null = null;
  private nameStarts: NameStarts | null = null;
  private warnSink: ((message: string) => void) | null = null;
  /** Warnings from before anyone listened (backend selection during load), delivered to the first listener. */
  private readonly earlyWarnings: string[] = [];
  /** Where degraded-mode messages go (the servers log them; the CLI prints them with --verbose). */
  get onWarning(): ((message: string) => void) | null {
    return this.warnSink ?? ((m) => void (this.earlyWarnings.length < 50 && this.earlyWarnings.push(m)));
  }
  set onWarning(sink: ((message: string) => void) | null) {
    this.warnSink = sink;
    if (sink) for (const m of this.earlyWarnings.splice(0)) sink(m);
  }
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly model: ModelDir,
    readonly backend: Backend,
    readonly tokenizer: TextTokenizer,
    readonly loadMs: number,
    opts: EngineOptions,
  ) {
    this.analyses = new Analyses({ languageServers: opts.languageServers, typescript: opts.typescript, log: (m) => this.onWarning?.(m) });
    this.persist = opts.kvCache?.persist ?? false;
    const modelKey = `${model.fingerprint()}:${backend.info.weights}`;
    this.kv = new KvManager(backend, {
      modelKey,
      budgetBytes: opts.kvCache?.budgetBytes,
      persistFile: opts.kvCache?.persist ? path.join(cacheRoot(), 'kv', `${crypto.createHash('sha256').update(modelKey).digest('hex').slice(0, 24)}.mgdkv`) : null,
      log: (m) => this.onWarning?.(m),
    });
  }

  static async load(opts: EngineOptions = {}): Promise<Engine> {
    const t0 = performance.now();
    const model = openModelDir(opts.model ?? embeddedModelDir());
    const tokenizer = await loadTokenizer(model.tokenizerFile, {
      tokenizerConfig: model.tokenizerConfig,
      eosTokenIds: model.generation.eosTokenIds,
      bosTokenId: model.generation.bosTokenId,
    });
    // WebGPU (on request, or on a hardware adapter for auto) or ONNX Runtime; WebGPU failures fall back to ONNX
    // Runtime with a warning, at load or later when the device is lost.
    let engine: Engine | null = null;
    const early: string[] = [];
    const warn = (m: string) => (engine ? engine.onWarning?.(m) : early.push(m));
    const backend = await selectBackend(model, opts, warn);
    // Checkpoints often pad the embedding past the tokenizer (Qwen2: 151,936 rows for 151,665 ids); the reverse
    // would let the tokenizer emit ids the model has no row for.
    if (tokenizer.vocabSize > model.config.vocabSize) {
      await backend.dispose();
      throw new BadInputError(`tokenizer.json has ${tokenizer.vocabSize} tokens but the model only ${model.config.vocabSize} embeddings`);
    }
    engine = new Engine(model, backend, tokenizer, performance.now() - t0, opts);
    for (const m of early) engine.onWarning?.(m);
    return engine;
  }

  /** Completes at the cursor between `prefix` and `suffix`. Queued behind requests already running. */
  complete(req: CompletionRequest): Promise<CompletionResult> {
    // a real request never waits for background prefill: stop it between chunks (or before it starts)
    for (const p of this.prefetches) p.abort();
    const run = this.queue.then(() => this.run(req));
    this.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * Background prefill when idle: computes the KV of the prompt a completion at this position would use (repository
   * context, then the file up to the cursor) and keeps it in the prefix cache, so the first real request there (a
   * file just opened, a file switched to) prefills only what changed. Any completion request cancels it between
   * chunks. Resolves to the tokens prefilled (0 if cancelled or already cached); never throws.
   */
  prefetch(req: CompletionRequest): Promise<number> {
    const controller = new AbortController();
    this.prefetches.add(controller);
    const job = this.queue.then(async () => {
      if (controller.signal.aborted) return 0;
      try {
        const { prompt } = await this.promptFor(req, req.maxTokens ?? DEFAULT_MAX_TOKENS, false);
        // The part later requests share: at the cursor, the prompt up to the prefix's end but its last token (which
        // the next keystroke may merge into another); at the file's start, only the header (in a suffix-first order
        // everything after it depends on where the cursor will be).
        const tokens = prompt.tokens.slice(0, req.prefix ? Math.max(prompt.headerTokens, prompt.prefixEnd - 1) : prompt.headerTokens);
        const kv = this.kv.acquire(tokens, documentKey(req));
        if (kv.reusable >= tokens.length - 1 || tokens.length < 2) return 0;
        const cache = kv.cache;
        if (cache.length > kv.reusable) cache.truncate(kv.reusable);
        await this.backend.forward(cache, tokens.slice(kv.reusable), { signal: controller.signal });
        this.kv.stash(cache);
        return tokens.length - kv.reusable;
      } catch {
        return 0; // cancelled by a real request, or nothing to do: a prefetch is only ever a bonus
      } finally {
        this.prefetches.delete(controller);
      }
    });
    this.queue = job.catch(() => undefined);
    return job;
  }

  private async run(req: CompletionRequest): Promise<CompletionResult> {
    if (req.signal?.aborted) throw new CancelledError();
    const t0 = performance.now();
    const maxTokens = req.maxTokens ?? DEFAULT_MAX_TOKENS;
    if (!Number.isInteger(maxTokens) || maxTokens < 1 || maxTokens > 4096) throw new BadInputError(`max tokens must be an integer in 1..4096, got ${maxTokens}`);
    // Healing moves a monitor's trigger into the first token (`new ` + ` Account`). Only the dereference monitor
    // handles such fused tokens (`.length`, by sample-then-verify), so with monitors only a trailing `.` is healed.
    const { prompt, context } = await this.promptFor(req, maxTokens, this.monitorsApply(req) ? (t) => t === '.' : true);
    // With healing, generation starts by re-spelling the healed text: the document is prefix-without-it + output.
    const docPrefix = prompt.healed ? req.prefix.slice(0, req.prefix.length - prompt.healed.length) : req.prefix;
    const { monitors, oracle } = this.monitorsFor({ ...req, prefix: docPrefix });
    // Headers (file path, control tokens) are outside the budgets: never decode past the model's positions.
    const room = this.backend.config.maxPositionEmbeddings - prompt.tokens.length;
    if (room < 1) throw new BadInputError(`the prompt (${prompt.tokens.length} tokens) fills the model's ${this.backend.config.maxPositionEmbeddings} positions`);
    const kv = this.kv.acquire(prompt.tokens, documentKey(req));
    const suffix = req.suffix ?? '';
    const show = (text: string, stopReason: string): Candidate => ({
      ...postProcess(text, { prefix: req.prefix, suffix, filePath: req.filePath, stopReason, replace: req.replace ?? true }),
      stopReason,
    });
    const checker = this.checkerFor(req);
    // one decode: the request's, or (continueFrom) an alternative from one of its branch points
    const decode = (o: { continueFrom?: number[]; signal?: AbortSignal; monitors?: Monitor[]; onText?: (t: string) => void } = {}) =>
      generate(this.backend, kv.cache, this.tokenizer, prompt.tokens, {
        maxTokens: Math.min(maxTokens, room),
        sampler: { temperature: req.temperature ?? 0, topP: req.topP ?? 1, seed: req.seed ?? 0 },
        stop: { mode: req.stop ?? 'block', stopStrings: req.stopStrings, eos: true, linePrefix: docPrefix.slice(docPrefix.lastIndexOf('\n') + 1) },
        heal: prompt.healed ? { text: prompt.healed, allowed: this.healMask(prompt.healed) } : undefined,
        // monitors last: they have the final word on what may be emitted (fresh ones per decode: they cache by offset)
        processors: [...(req.processors ?? []), ...(o.monitors ?? this.monitorsFor({ ...req, prefix: docPrefix }).monitors)],
        vocabLimit: this.tokenizer.vocabSize,
        signal: o.signal ?? req.signal,
        onText: o.onText,
        continueFrom: o.continueFrom,
        branches: !!checker,
      });
    const out = await decode({ monitors, onText: req.onText });
    const errors = monitors.reduce((a, m) => a + m.stats.errors, 0);
    const error = monitors.find((m) => m.stats.lastError)?.stats.lastError;
    if (error) this.onWarning?.(`analysis failed at ${errors} site(s) (${error}); those sites were decoded unmonitored`);
    let shown: Candidate = show(out.text, out.stopReason);
    let verify: VerifyReport = { status: 'off', candidates: 0, checked: 0, chosen: -1, ms: 0, added: 0, exhausted: false };
    let candidates: Candidate[] | undefined;
    if (checker && out.stopReason !== 'cancelled') {
      const budgetMs = req.verifyMs ?? DEFAULT_VERIFY_MS;
      // the alternatives: branch points where the runner-up came closest first, re-decoded with the runner-up
      const branches = out.branches.filter((b) => b.step < out.tokens.length).sort((a, b) => a.margin - b.margin);
      const alternative = async (ms: number): Promise<Candidate | null> => {
        const b = branches.shift();
        if (!b) return null;
        // never past the budget: a decode still running then is abandoned
        const stop = AbortSignal.any([...(req.signal ? [req.signal] : []), AbortSignal.timeout(Math.max(1, Math.ceil(ms)))]);
        const alt = await decode({ continueFrom: [...out.tokens.slice(0, b.step), b.alt], signal: stop });
        if (alt.stopReason === 'cancelled') return null;
        const text = prompt.healed && alt.text.startsWith(prompt.healed) ? alt.text.slice(prompt.healed.length) : alt.text;
        return show(text, alt.stopReason);
      };
      const v = await verifySuggestion(shown, {
        budgetMs,
        want: Math.max(1, Math.min(req.candidates ?? 1, 3)),
        added: (c) => checker(c),
        alternative,
        maxAlternatives: MAX_ALTERNATIVES,
        repair: (c) => {
          if (c.replace > 0) return null; // it replaces closers after the cursor: its line is closed already
          const closers = lineClosers(c.text, { prefix: req.prefix, filePath: req.filePath });
          return closers ? { ...c, text: c.text + closers, replace: 0 } : null;
        },
        // cut back to where the suggestion reads as finished, its brackets closed as a finished answer's are
        // (post-processed as finished; reported as cut by the verifier, not by the model); also right after an opener
        // where what is left open is what the lines below close (a call the file goes on with)
        prefixes: () =>
          [...new Set([...sensibleCuts(out.text), ...cutsOpenForSuffix(out.text, { prefix: req.prefix, suffix, filePath: req.filePath })])]
            .sort((a, b) => b - a)
            .map((i) => ({ ...show(out.text.slice(0, i), 'eos'), stopReason: 'verify-cut' })),
        signal: req.signal,
      });
      shown = v.shown;
      verify = v.report;
      if ((req.candidates ?? 1) > 1) candidates = v.clean.length ? v.clean : [shown];
      if (verify.error) this.onWarning?.(`verification failed (${verify.error}); the suggestion goes out unverified`);
    }
    // the departed document's blocks go to the prefix cache once this answer is out, before the next request
    setImmediate(() => this.kv.flush());
    return {
      text: shown.text,
      replace: shown.replace,
      raw: out.text,
      tokens: out.tokens.length,
      promptTokens: prompt.tokens.length,
      // why the shown text ends: an alternative's own stop, 'verify-cut' for a prefix the verifier chose
      stopReason: shown.stopReason ?? out.stopReason,
      timings: {
        loadMs: round(this.loadMs),
        analysisMs: round(monitors.reduce((a, m) => a + m.stats.analysisMs, 0)),
        prefillMs: round(out.prefillMs),
        decodeMs: round(out.decodeMs),
        totalMs: round(performance.now() - t0),
      },
      monitor: {
        triggers: monitors.reduce((a, m) => a + m.stats.triggers, 0),
        maskedSteps: out.maskedSteps,
        interventions: out.interventions,
        forcedTokens: out.forcedTokens,
        errors,
        ...(oracle ? { oracle } : {}),
        ...(error ? { error } : {}),
      },
      cache: {
        promptTokens: prompt.tokens.length,
        reusedTokens: out.reusedTokens,
        source: kv.source,
        spliceMs: round(kv.spliceMs),
        bytes: this.kv.stats().bytes + this.kv.stats().residentBytes,
      },
      promptMode: prompt.mode,
      verify,
      ...(candidates ? { candidates } : {}),
      context: { blocks: context.length, tokens: prompt.contextTokens },
    };
  }

  /** The prompt for a request: its repository context (given or retrieved), packed with the text around the cursor. */
  private async promptFor(req: CompletionRequest, maxTokens: number, heal: PromptInput['heal']): Promise<{ prompt: Prompt; context: NonNullable<CompletionRequest['context']> }> {
    const context = req.context ?? (await this.contextFor(req));
    const prompt = await buildPrompt(this.tokenizer, {
      prefix: req.prefix,
      suffix: req.suffix ?? '',
      filePath: req.filePath,
      context,
      budget: this.promptBudget(maxTokens, context.length ? req.contextTokens : 0),
      heal,
      fim: req.fim ?? this.model.generation.promptMode === 'fim',
      fimOrder: req.fimOrder ?? this.model.generation.fimOrder,
    });
    return { prompt, context };
  }

  private monitorsApply(req: CompletionRequest): boolean {
    return req.monitors !== false && !!req.filePath && this.analyses.applies(req.filePath, req.language);
  }

  /**
   * The checker for verification: the codes of the diagnostics a candidate adds to the document (the document
   * without it is the baseline, computed only when the candidate has any diagnostic at all). Null where nothing
   * checks this file (not TypeScript/JavaScript) or verification is off.
   */
  private checkerFor(req: CompletionRequest): ((c: Candidate) => Promise<number[]>) | null {
    if (req.verify === false || !this.monitorsApply(req) || !req.filePath) return null;
    const workspace = path.resolve(req.workspace ?? path.dirname(path.resolve(req.filePath)));
    const file = path.resolve(workspace, req.filePath);
    const analysis = this.analyses.for(file, workspace, req.language);
    const typescript = analysis?.typescript;
    if (!analysis || !typescript) return null;
    const suffix = req.suffix ?? '';
    // What a suggestion is excused for: errors both the document as it is and the document without the cursor's
    // line have. The line cut at the cursor is broken code (an unclosed template, `obj.` running into the next
    // line) whose errors would excuse the same errors in a suggestion; removing the line breaks what depends on it
    // (an `else` after it), whose errors would excuse those.
    const nl = suffix.indexOf('\n');
    const docs = [req.prefix + suffix, req.prefix.slice(0, req.prefix.lastIndexOf('\n') + 1) + (nl < 0 ? '' : suffix.slice(nl + 1))];
    // The full check: the members oracle's where it offers one (tsgo checks in tens of milliseconds what takes
    // typescript@6 hundreds on a large workspace), else the in-process service.
    const errors = async (text: string): Promise<CheckDiagnostic[]> => (await analysis.oracle.errors?.(file, text)) ?? typescript().errors(file, text);
    let parseBaseline: CheckDiagnostic[] | null = null;
    // each baseline is checked only when needed: the second only for errors the first has
    const baselines: Array<Promise<CheckDiagnostic[]> | null> = [null, null];
    const baseline = (i: number) => (baselines[i] ??= errors(docs[i]!));
    return async (c) => {
      const doc = req.prefix + c.text + suffix.slice(c.replace);
      // the parser first (milliseconds): a candidate that breaks the syntax needs no type check
      const parsed = parseDiagnostics(file, doc);
      if (parsed.length) {
        parseBaseline ??= commonDiagnostics(parseDiagnostics(file, docs[0]!), parseDiagnostics(file, docs[1]!));
        const added = newDiagnostics(parseBaseline, parsed);
        if (added.length) return added.map((d) => d.code);
        // excused, unless the candidate leaves closers below the cursor closing nothing or the wrong bracket: the
        // document without the line has the same errors because the line is what opens those brackets (its rest
        // was `subscribe(` and the arguments follow below), so they are the candidate's to fix, not the file's
        if (strayClosersAfter(c.text, { prefix: req.prefix, suffix: suffix.slice(c.replace), filePath: req.filePath }) > 0) return parsed.map((d) => d.code);
      }
      const after = await errors(doc);
      if (after.length === 0) return [];
      const added = newDiagnostics(await baseline(0), after);
      if (added.length) return added.map((d) => d.code);
      return newDiagnostics(commonDiagnostics(await baseline(0), await baseline(1)), after).map((d) => d.code);
    };
  }

  /**
   * For the line-end monitor: whether a one-line suggestion's text, shown as post-processing shows it, leaves no
   * syntax error at or after the cursor's line, as it is or as the verifier would repair it. Judged only where the file without the cursor's line has none there
   * (the usual case: a line being typed into well-formed code); elsewhere the suffix is broken anyway and every end fits.
   */
  private lineFits(req: CompletionRequest, file: string): (text: string) => boolean {
    const suffix = req.suffix ?? '';
    const lineStart = req.prefix.lastIndexOf('\n') + 1;
    const nl = suffix.indexOf('\n');
    let judged: boolean | null = null;
    return (text) => {
      judged ??= req.prefix.length + suffix.length <= LINE_FIT_MAX_CHARS && syntaxErrorsFrom(file, req.prefix.slice(0, lineStart) + (nl < 0 ? '' : suffix.slice(nl + 1)), lineStart) === 0;
      if (!judged) return true;
      const shown = postProcess(text, { prefix: req.prefix, suffix, filePath: req.filePath, stopReason: 'line', replace: req.replace ?? true });
      if (syntaxErrorsFrom(file, req.prefix + shown.text + suffix.slice(shown.replace), lineStart) === 0) return true;
      // the verifier's repair (what the line leaves open closed: a template's `}` and backtick) would make it fit
      const closers = shown.replace ? '' : lineClosers(shown.text, { prefix: req.prefix, filePath: req.filePath });
      return closers !== '' && syntaxErrorsFrom(file, req.prefix + shown.text + closers + suffix, lineStart) === 0;
    };
  }

  /** The monitors that apply to this request's file (none for languages without an oracle, or when disabled). */
  private monitorsFor(req: CompletionRequest): { monitors: Monitor[]; oracle?: string } {
    if (!this.monitorsApply(req) || !req.filePath) return { monitors: [] };
    const workspace = path.resolve(req.workspace ?? path.dirname(path.resolve(req.filePath)));
    const file = path.resolve(workspace, req.filePath);
    const analysis = this.analyses.for(file, workspace, req.language);
    if (!analysis) return { monitors: [] };
    const { oracle, typescript, isCode } = analysis;
    const masks = this.tokenMasks();
    const suffix = req.suffix ?? '';
    const monitors: Monitor[] = [
      new DereferenceMonitor(req.prefix, suffix, (text, offset) => oracle.members(file, text, offset), masks),
      new CallArityMonitor(req.prefix, suffix, (text, offset) => oracle.callShape(file, text, offset), (this.brackets ??= new BracketProfiles(this.tokenizer))),
    ];
    if (typescript) {
      // identifier sites only the in-process TypeScript service can answer (LSP has no such questions)
      const sites: SiteOracle = (site, text, offset) => {
        if (!isCode(text, offset)) return null;
        const ts = typescript();
        return site.query === 'constructible'
          ? ts.constructible(file, text, offset)
          : site.query === 'switch-enum'
            ? ts.switchEnum(file, text, offset)
            : ts.completions(file, text, offset, site.keep ?? (() => true));
      };
      for (const kind of [NEW_CLASS, IMPORT_NAMES, SWITCH_ENUM]) monitors.push(new CompletionSiteMonitor(kind, req.prefix, suffix, sites, masks));
      const callable = (text: string, offset: number) => (isCode(text, offset) ? typescript().callable(file, text, offset) : null);
      monitors.push(new CallableMonitor(req.prefix, suffix, callable, (this.openers ??= new CallOpeners(this.tokenizer))));
      const scope = (text: string, offset: number) => (isCode(text, offset) ? typescript().scopeNames(file, text, offset) : null);
      monitors.push(new ScopeNamesMonitor(req.prefix, suffix, scope, masks, (this.nameStarts ??= new NameStarts(this.tokenizer))));
      if (req.stop === 'line') monitors.push(new LineEndMonitor(this.lineFits(req, file), (this.endings ??= new EndingTokens(this.tokenizer))));
    }
    const syntax = knownSyntax(file);
    if (syntax) monitors.push(new BracketDisciplineMonitor(req.prefix, suffix, syntax, (this.bracketTokens ??= new BracketTokens(this.tokenizer))));
    const kinds = req.monitorKinds ?? {};
    return { monitors: monitors.filter((m) => kinds[m.kind as MonitorKind] !== false), oracle: oracle.name };
  }

  /**
   * Tokens starting with `text`, for token healing. A linear scan per distinct healed text (milliseconds, cached: a
   * few strings like "." recur), so healing never waits for the monitors' trie (about a second at 151k tokens).
   */
  private healMask(text: string): Uint32Array {
    let bits = this.healMasks.get(text);
    if (bits) return bits;
    if (this.masks) bits = this.masks.startingWith(new TextEncoder().encode(text));
    else {
      const want = new TextEncoder().encode(text);
      bits = new Uint32Array(Math.ceil(this.tokenizer.vocabSize / 32));
      for (let id = 0; id < this.tokenizer.vocabSize; id++) {
        const b = this.tokenizer.tokenBytes(id);
        if (b.length < want.length) continue;
        let ok = true;
        for (let i = 0; i < want.length && ok; i++) ok = b[i] === want[i];
        if (ok) bits[id >>> 5]! |= 1 << (id & 31);
      }
    }
    if (this.healMasks.size < 64) this.healMasks.set(text, bits);
    return bits;
  }

  /** The vocabulary trie and masks, built on first use (about a second for a 151k vocabulary). */
  private tokenMasks(): TokenMasks {
    return (this.masks ??= new TokenMasks(new VocabTrie((id) => this.tokenizer.tokenBytes(id), this.tokenizer.vocabSize)));
  }

  /**
   * Splits the context window: generation first, 32 tokens for headers and control tokens; then repository context
   * (30% of the rest unless the request says, at most 60%; what it does not use goes to the prefix), then 3/4 of the remainder
   * to the prefix and 1/4 to the suffix.
   */
  private promptBudget(maxTokens: number, contextTokens?: number): { prefixTokens: number; suffixTokens: number; contextTokens: number } {
    const window = Math.min(this.backend.config.maxPositionEmbeddings, 4096);
    const room = Math.max(16, window - Math.min(maxTokens, window / 2) - 32);
    const context = Math.max(0, Math.min(contextTokens ?? Math.floor(room * 0.3), Math.floor(room * 0.6)));
    const rest = room - context;
    return { prefixTokens: Math.floor(rest * 0.75), suffixTokens: Math.floor(rest * 0.25), contextTokens: context };
  }

  /**
   * Repository context from the workspace's index (built in the background on first use; what is indexed so far is
   * used), and at a member access the receiver's type definition from the type oracle (when monitors run, so the
   * oracle is up anyway; at most RECEIVER_TYPE_MS). Never fails a completion: an error means no context.
   */
  async contextFor(req: CompletionRequest): Promise<ContextBlock[]> {
    if (!req.workspace || !req.filePath) return [];
    const workspace = path.resolve(req.workspace);
    try {
      if (!this.indexes.has(workspace)) void this.indexWorkspace(workspace);
      const index = this.indexes.get(workspace)!;
      const abs = path.resolve(workspace, req.filePath);
      index.update(abs, req.prefix + (req.suffix ?? ''));
      const receiverTypes = (await this.receiverTypes(req, abs, workspace))
        .map((t) => ({ file: index.relative(t.file), line: t.line }))
        .filter((t): t is { file: string; line: number } => t.file !== null);
      return retrieveContext(index, abs, req.prefix, req.suffix ?? '', { receiverTypes });
    } catch (e) {
      this.onWarning?.(`repository context unavailable: ${oneLine(e)}; completing without it`);
      return [];
    }
  }

  /** Where the type oracle says the receiver of a member access at the cursor (`book.`, `book.ba`) is defined. */
  private async receiverTypes(req: CompletionRequest, file: string, workspace: string): Promise<TypeLocation[]> {
    const m = /[\w$)\]>]\s*\.(?:[A-Za-z_$][\w$]*)?$/.exec(req.prefix);
    if (!m || !this.monitorsApply(req)) return [];
    const end = m.index + 1; // just past the receiver's last character
    const text = req.prefix + (req.suffix ?? '');
    const analysis = this.analyses.for(file, workspace, req.language);
    if (!analysis?.oracle.typeDefinitions || !analysis.isCode(text, end)) return [];
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), RECEIVER_TYPE_MS)));
    try {
      return (await Promise.race([Promise.resolve(analysis.oracle.typeDefinitions(file, text, end)), late])) ?? [];
    } catch {
      return []; // the oracle's failures are counted by the monitors; context just goes without
    } finally {
      clearTimeout(timer);
    }
  }

  /** Indexes a workspace now (the CLI waits for it; servers let it run in the background). */
  indexWorkspace(workspace: string): Promise<void> {
    const ws = path.resolve(workspace);
    let index = this.indexes.get(ws);
    if (!index) {
      const persistFile = this.persist ? path.join(cacheRoot(), 'context', `${crypto.createHash('sha256').update(ws).digest('hex').slice(0, 24)}.json`) : null;
      index = new RepoIndex(ws, { persistFile, log: (m) => this.onWarning?.(m) });
      this.indexes.set(ws, index);
      this.unwatch.push(index.watch());
    }
    return index.whenIndexed();
  }

  /** The repository index of a workspace (started on first use), for stats and tests. */
  repoIndex(workspace: string): RepoIndex | undefined {
    return this.indexes.get(path.resolve(workspace));
  }

  /** The managed KV cache's counters (blocks, bytes vs budget, hits, evictions, splices). */
  kvStats(): KvStats {
    return this.kv.stats();
  }

  async dispose(): Promise<void> {
    for (const stop of this.unwatch.splice(0)) stop();
    for (const index of this.indexes.values()) index.save();
    this.kv.dispose();
    await this.analyses.dispose();
    await this.backend.dispose();
  }
}

/** The document a request is about, for the KV manager to notice a switch between documents. */
function documentKey(req: CompletionRequest): string | undefined {
  return req.filePath && path.resolve(req.workspace ?? '.', req.filePath);
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
