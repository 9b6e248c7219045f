/**
 * The decode loop.
 *
 *   reuse the longest prefix of the prompt the cache already holds; forward the rest        (prefill)
 *   repeat:
 *     masks  <- what each processor allows                                                  (monitors)
 *     token  <- sampler(best allowed tokens); a processor may reject it: constrain strictly and sample again
 *     text  += bytes(token), decoded incrementally                                          (exact UTF-8)
 *     stop?  EOS or special token, stop string, end of line/block, max tokens, cancelled
 *     logits <- forward(token)                                                              (decode step)
 *
 * The logits stay where the backend computed them (LogitsRow): a sampler that decides from the best k tokens (greedy,
 * top-k) asks the row for those under the step's masks, so a GPU backend applies the masks and picks on the device
 * and reads back k pairs. A sampler that needs the whole distribution, or a processor that edits logits (process()),
 * reads the row back and works on the host as before. Both give the same tokens.
 *
 * Cancellation is a value: an aborted signal ends the loop between steps with stopReason 'cancelled' and what was
 * generated so far. The cache is left holding the prompt and the generated tokens that were forwarded, ready for
 * the next request to reuse.
 */
import type { Backend, KvCache } from '../backends/backend.js';
import { forwardRowOf, type LogitsRow } from '../backends/logits-row.js';
import { CancelledError } from '../errors.js';
import type { TextTokenizer } from '../tokenizer/types.js';
import type { DecodeState, LogitsProcessor } from './logits-processor.js';
import { argmax, createSampler, type Sampler, type SamplerOptions } from './sampler.js';
import { StopRules, type StopOptions } from './stop.js';
import { applyMask, intersect, isAllowed } from './mask/token-mask.js';

export type StopReason = 'eos' | 'max-tokens' | 'stop-string' | 'line' | 'block' | 'repetition' | 'cancelled' | 'masked-out';

export interface GenerateOptions {
  maxTokens: number;
  sampler?: SamplerOptions;
  stop?: StopOptions & { eos?: boolean };
  processors?: LogitsProcessor[];
  signal?: AbortSignal;
  /** Streaming: called with each new piece of text (never a partial UTF-8 character). */
  onText?: (delta: string) => void;
  /**
   * Token healing: the text the prompt left out (Prompt.healed) and the tokens allowed first (those starting with
   * it). Generation starts by re-spelling it; it is not part of the returned text.
   */
  heal?: { text: string; allowed: Uint32Array };
  /** Ids at and above this are never chosen: embedding rows that checkpoints pad past the tokenizer have no text.
   * Default: every id of the row. */
  vocabLimit?: number;
  /**
   * Tokens already generated (a branch taken at an earlier decode's branch point): forwarded with the prompt, part of
   * the returned tokens and text, and seen by the processors as generated text. Token healing is then over.
   */
  continueFrom?: readonly number[];
  /** Record the runner-up token at each sampled step (for alternatives at the branch points). */
  branches?: boolean;
}

/** A step where the model had a second choice: re-decoding from `step` with `alt` gives an alternative suggestion. */
export interface BranchPoint {
  step: number;
  /** The runner-up token under the same masks. */
  alt: number;
  /** Logit of the chosen token minus the runner-up's (small: the model nearly took the other way). */
  margin: number;
}

export interface GenerateResult {
  text: string;
  tokens: number[];
  stopReason: StopReason;
  promptTokens: number;
  reusedTokens: number;
  prefillMs: number;
  decodeMs: number;
  steps: number;
  maskedSteps: number;
  interventions: number;
  /** Tokens appended without a model step because a processor allowed only one continuation (fast-forward). */
  forcedTokens: number;
  /** Where the model had a runner-up (with GenerateOptions.branches). */
  branches: BranchPoint[];
}

export async function generate(backend: Backend, cache: KvCache, tok: TextTokenizer, prompt: readonly number[], o: GenerateOptions): Promise<GenerateResult> {
  if (prompt.length === 0) throw new RangeError('generate: empty prompt');
  const processors = o.processors ?? [];
  const sampler = createSampler(o.sampler);
  const stop = new StopRules(o.stop ?? { mode: 'none' });
  const stopOnEos = o.stop?.eos ?? true;
  const result: GenerateResult = {
    text: '',
    tokens: [],
    stopReason: 'max-tokens',
    promptTokens: prompt.length,
    reusedTokens: 0,
    prefillMs: 0,
    decodeMs: 0,
    steps: 0,
    maskedSteps: 0,
    interventions: 0,
    forcedTokens: 0,
    branches: [],
  };
  const utf8 = new TextDecoder('utf-8');
  const resumed = o.continueFrom ?? [];
  for (const t of resumed) {
    result.tokens.push(t);
    result.text += utf8.decode(tok.tokenBytes(t), { stream: true });
  }
  const input = resumed.length ? [...prompt, ...resumed] : prompt;

  // ---- prefill: keep the cache's longest common prefix with the prompt, and at least one token to run
  let common = 0;
  const cached = cache.tokens;
  while (common < cached.length && common < input.length && cached[common] === input[common]) common++;
  common = Math.min(common, input.length - 1);
  if (cache.length > common) cache.truncate(common);
  result.reusedTokens = common;
  // greedy and top-k sampling decide from the best few tokens: ask the row for those, unless a processor edits logits
  const onTop = sampler.topK > 0 && processors.every((p) => p.allowed);
  const limit = o.vocabLimit ?? Number.MAX_SAFE_INTEGER; // rows cap it at their length
  // (a runner-up for the branch points needs the best two)
  const k = o.branches ? Math.max(2, sampler.topK) : sampler.topK;
  const top = onTop ? { k, limit } : undefined;
  // (the signal only interrupts prefill: a decode step is short and the loop checks it between steps)
  const forward = (tokens: readonly number[], signal?: AbortSignal): Promise<LogitsRow> => forwardRowOf(backend, cache, tokens, { signal, top });

  const t0 = performance.now();
  let row: LogitsRow;
  try {
    row = await forward(input.slice(common), o.signal);
  } catch (e) {
    if (e instanceof CancelledError) return { ...result, stopReason: 'cancelled', prefillMs: performance.now() - t0 };
    throw e;
  }
  result.prefillMs = performance.now() - t0;

  // ---- decode
  const t1 = performance.now();
  const healed = resumed.length ? '' : (o.heal?.text ?? '');
  let emitted = resumed.length ? result.text.length : healed.length; // characters of result.text already streamed (the healed part never is)
  // one token onto the output: the processors told (with the state before it), its bytes decoded
  const append = (token: number, state: DecodeState) => {
    const bytes = tok.tokenBytes(token);
    for (const p of processors) p.accept?.(token, bytes, state);
    result.tokens.push(token);
    result.steps++;
    result.text += utf8.decode(bytes, { stream: true });
  };
  // after appending: apply a stop rule if one fires, stream what is new; true when generation must end
  const stopped = (): boolean => {
    const decision = stop.check(result.text);
    if (decision) {
      result.text = result.text.slice(0, decision.cut);
      if (decision.reason !== 'stop-string') result.text = result.text.trimEnd();
      result.stopReason = decision.reason;
    }
    if (o.onText && result.text.length > emitted) {
      o.onText(result.text.slice(emitted));
      emitted = result.text.length;
    }
    return decision !== null;
  };
  for (let step = resumed.length; step < o.maxTokens; step++) {
    if (o.signal?.aborted) {
      result.stopReason = 'cancelled';
      break;
    }
    const state: DecodeState = { step, tokens: result.tokens, text: result.text };
    for (const p of processors) {
      const pending = p.prepare?.(state);
      if (pending) await pending;
    }
    if (o.signal?.aborted) {
      // analysis may have taken a while (a language server): a newer request may be waiting
      result.stopReason = 'cancelled';
      break;
    }
    // Fast-forward: a processor that leaves one continuation has its tokens appended without a model step.
    const forced = step === 0 && healed ? null : forcedText(processors, state);
    if (forced) {
      const ids = await tok.encode(forced);
      if (ids.length > 0) {
        for (const id of ids) append(id, { step: result.tokens.length, tokens: result.tokens, text: result.text });
        result.forcedTokens += ids.length;
        step += ids.length - 1;
        if (stopped() || step + 1 >= o.maxTokens) break;
        row = await forward(ids);
        continue;
      }
    }
    const verify = (token: number) => rejected(processors, token, tok.tokenBytes(token), state);
    const heal = step === 0 && o.heal ? o.heal.allowed : null;
    const c = await (onTop ? chooseFromTop : chooseFromRow)({ row, k, branches: !!o.branches, limit, vocab: tok.vocabSize, heal, processors, sampler, state, verify });
    if (c.runnerUp) result.branches.push({ step: result.tokens.length, alt: c.runnerUp.id, margin: c.runnerUp.margin });
    if (c.masked) result.maskedSteps++;
    if (c.intervened) result.interventions++;
    const token = c.token;
    if (token < 0) {
      result.stopReason = 'masked-out';
      break;
    }
    if (stopOnEos && (tok.eosIds.includes(token) || tok.isSpecial(token))) {
      result.stopReason = 'eos';
      break;
    }
    append(token, state);
    if (stopped() || step + 1 === o.maxTokens) break;
    row = await forward([token]);
  }
  // A suggestion must not end inside a monitored construct (halfway through a name): finish it or cut back.
  if (result.stopReason !== 'eos' && result.stopReason !== 'masked-out') settle(processors, result);
  result.decodeMs = performance.now() - t1;
  if (healed) result.text = result.text.startsWith(healed) ? result.text.slice(healed.length) : result.text;
  return result;
}

/** The first processor's forced continuation, if any. */
function forcedText(processors: readonly LogitsProcessor[], state: DecodeState): string | null {
  for (const p of processors) {
    const f = p.forced?.(state);
    if (f) return f;
  }
  return null;
}

/** Applies the processors' settle() verdicts to the end of the text (each sees the text the previous left). */
function settle(processors: readonly LogitsProcessor[], result: GenerateResult): void {
  for (const p of processors) {
    const v = p.settle?.(result.text);
    if (!v) continue;
    if ('append' in v) result.text += v.append;
    else if (v.cut < result.text.length) result.text = result.text.slice(0, Math.max(0, v.cut)).trimEnd();
  }
}

interface StepInput {
  row: LogitsRow;
  /** How many of the best tokens to ask the row for (the sampler's k, or two for a runner-up). */
  k: number;
  /** Whether to find the runner-up (GenerateOptions.branches): otherwise no work is spent on it. */
  branches: boolean;
  limit: number;
  /** The tokenizer's vocabulary size (the width of a mask). */
  vocab: number;
  /** Token healing's mask on the first step (not analysis: not counted as masking). */
  heal: Uint32Array | null;
  processors: readonly LogitsProcessor[];
  sampler: Sampler;
  state: DecodeState;
  /** Whether a processor rejects the sampled token after all. */
  verify: (token: number) => Promise<boolean>;
}

interface Choice {
  /** -1: every token was masked. */
  token: number;
  /** A processor constrained this step. */
  masked: boolean;
  /** The constraint forbade what the model alone would have picked (its best token). */
  intervened: boolean;
  /** The next-best token under the same masks and how far behind it was (with StepInput.branches). */
  runnerUp?: { id: number; margin: number };
}

/** The best-k path: masks intersected, the row asked for the sampler's k best under them (on the device if it is). */
async function chooseFromTop(s: StepInput): Promise<Choice> {
  const masks: Uint32Array[] = s.heal ? [s.heal] : [];
  let masked = false;
  const constrain = () => {
    for (const p of s.processors) {
      const m = p.allowed!(s.state);
      if (m) {
        masks.push(m);
        masked = true;
      }
    }
  };
  let combined: Uint32Array | null = null; // what the last choice was made under
  let best: Awaited<ReturnType<LogitsRow['top']>> | null = null;
  const pick = async () => {
    combined = masks.length ? masks.reduce(intersect) : null;
    best = await s.row.top(s.k, combined, s.limit);
    return s.sampler.choose(best);
  };
  constrain();
  let token = await pick();
  for (let round = 0; round < VERIFY_ROUNDS && token >= 0 && (await s.verify(token)); round++) {
    // a processor could not allow that token after all: let every processor constrain fully, then choose again
    // (without the rejected token, whatever the masks say)
    s.state.strict = true;
    masks.push(without(s.vocab, token));
    constrain();
    token = await pick();
  }
  let intervened = false;
  if (masked && combined) {
    const alone = await s.row.top(1, s.heal, s.limit);
    intervened = alone.ids.length > 0 && !isAllowed(combined, alone.ids[0]!);
  }
  return { token, masked, intervened, runnerUp: s.branches ? runnerUpOf(best, token) : undefined };
}

/** The best token among `best` other than `chosen`, with the chosen one's lead over it. */
function runnerUpOf(best: { ids: ArrayLike<number>; logits: ArrayLike<number> } | null, chosen: number): Choice['runnerUp'] {
  if (!best || chosen < 0) return undefined;
  let chosenLogit = -Infinity;
  let alt = -1;
  let altLogit = -Infinity;
  for (let i = 0; i < best.ids.length; i++) {
    const id = best.ids[i]!;
    const v = best.logits[i]!;
    if (id === chosen) chosenLogit = v;
    else if (alt < 0 && v > -Infinity) {
      alt = id;
      altLogit = v;
    }
  }
  return alt >= 0 && chosenLogit > -Infinity ? { id: alt, margin: chosenLogit - altLogit } : undefined;
}

/** The whole-row path: the row read back, masks and process() applied in order, the sampler over every token. */
async function chooseFromRow(s: StepInput): Promise<Choice> {
  const logits = await s.row.read();
  if (s.limit < logits.length) logits.fill(-Infinity, s.limit);
  if (s.heal) applyMask(logits, s.heal);
  const alone = s.processors.length ? argmax(logits) : -1;
  let masked = false;
  const constrain = () => {
    for (const p of s.processors) {
      if (p.allowed) {
        const m = p.allowed(s.state);
        if (m) {
          applyMask(logits, m);
          masked = true;
        }
      } else if (p.process?.(logits, s.state)) masked = true;
    }
  };
  constrain();
  let token = s.sampler.sample(logits);
  for (let round = 0; round < VERIFY_ROUNDS && token >= 0 && (await s.verify(token)); round++) {
    s.state.strict = true;
    logits[token] = -Infinity;
    constrain();
    token = s.sampler.sample(logits);
  }
  return { token, masked, intervened: masked && alone >= 0 && logits[alone] === -Infinity, runnerUp: s.branches ? runnerUpOf(bestTwo(logits), token) : undefined };
}

/** The two best ids of a host row (for the runner-up on the whole-row path). */
function bestTwo(logits: Float32Array): { ids: number[]; logits: number[] } {
  let a = -1;
  let b = -1;
  for (let i = 0; i < logits.length; i++) {
    const v = logits[i]!;
    if (v === -Infinity) continue;
    if (a < 0 || v > logits[a]!) {
      b = a;
      a = i;
    } else if (b < 0 || v > logits[b]!) b = i;
  }
  const ids = [a, b].filter((i) => i >= 0);
  return { ids, logits: ids.map((i) => logits[i]!) };
}

/**
 * How many times a step's choice is verified. The first processor that rejects a token stops the asking, so the
 * token chosen again under the strict masks has not been judged by the processors after it (the callable monitor
 * refuses `(z`, and `[z` comes next, a name the scope-names monitor never saw): it is verified again, a bounded
 * number of times (each may ask analysis once), and the last choice stands.
 */
const VERIFY_ROUNDS = 4;

/** A mask of every token but one. */
function without(vocab: number, token: number): Uint32Array {
  const m = new Uint32Array(Math.ceil(vocab / 32)).fill(0xffffffff);
  m[token >>> 5]! &= ~(1 << (token & 31));
  return m;
}

/** Whether any processor rejects the sampled token (awaiting only those that must ask analysis first). */
async function rejected(processors: readonly LogitsProcessor[], token: number, bytes: Uint8Array, state: DecodeState): Promise<boolean> {
  for (const p of processors) {
    const verdict = p.reject?.(token, bytes, state);
    if (verdict === true || (verdict instanceof Promise && (await verdict))) return true;
  }
  return false;
}
