/**
 * The decode loop.
 *
 *   reuse the longest prefix of the prompt the cache already holds; forward the rest        (prefill)
 *   repeat:
 *     logits -> each processor masks what it forbids                                       (monitors)
 *     token  <- sampler(logits); a processor may reject it: mask strictly and sample again  (greedy / top-p)
 *     text  += bytes(token), decoded incrementally                                          (exact UTF-8)
 *     stop?  EOS or special token, stop string, end of line/block, max tokens, cancelled
 *     logits <- forward(token)                                                              (decode step)
 *
 * Cancellation is a value: an aborted signal ends the loop between steps with stopReason 'cancelled' and what was
 * generated so far. The cache is left holding the prompt and the generated tokens that were forwarded, ready for
 * the next request to reuse.
 */
import type { Backend, KvCache } from '../backends/backend.js';
import { CancelledError } from '../errors.js';
import type { TextTokenizer } from '../tokenizer/types.js';
import type { DecodeState, LogitsProcessor } from './logits-processor.js';
import { argmax, createSampler, type SamplerOptions } from './sampler.js';
import { StopRules, type StopOptions } from './stop.js';
import { applyMask } from './mask/token-mask.js';

export type StopReason = 'eos' | 'max-tokens' | 'stop-string' | 'line' | 'block' | 'cancelled' | 'masked-out';

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
  };

  // ---- prefill: keep the cache's longest common prefix with the prompt, and at least one token to run
  let common = 0;
  const cached = cache.tokens;
  while (common < cached.length && common < prompt.length && cached[common] === prompt[common]) common++;
  common = Math.min(common, prompt.length - 1);
  if (cache.length > common) cache.truncate(common);
  result.reusedTokens = common;
  const t0 = performance.now();
  let logits: Float32Array;
  try {
    logits = await backend.forward(cache, prompt.slice(common), { signal: o.signal });
  } catch (e) {
    if (e instanceof CancelledError) return { ...result, stopReason: 'cancelled', prefillMs: performance.now() - t0 };
    throw e;
  }
  result.prefillMs = performance.now() - t0;

  // ---- decode
  const utf8 = new TextDecoder('utf-8');
  const t1 = performance.now();
  const healed = o.heal?.text ?? '';
  let emitted = healed.length; // characters of result.text already streamed (the healed part never is)
  for (let step = 0; step < o.maxTokens; step++) {
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
    if (step === 0 && o.heal) applyMask(logits, o.heal.allowed);
    let masked = false;
    let unmaskedTop = -1;
    for (const p of processors) {
      if (!masked && unmaskedTop < 0) unmaskedTop = argmax(logits);
      if (p.process(logits, state)) masked = true;
    }
    let token = sampler.sample(logits);
    if (token >= 0 && (await rejected(processors, token, tok.tokenBytes(token), state))) {
      // a processor could not allow that token after all: let every processor constrain fully, then sample again
      state.strict = true;
      for (const p of processors) if (p.process(logits, state)) masked = true;
      token = sampler.sample(logits);
    }
    if (masked) {
      result.maskedSteps++;
      if (unmaskedTop >= 0 && logits[unmaskedTop] === -Infinity) result.interventions++;
    }
    if (token < 0) {
      result.stopReason = 'masked-out';
      break;
    }
    if (stopOnEos && (tok.eosIds.includes(token) || tok.isSpecial(token))) {
      result.stopReason = 'eos';
      break;
    }
    const bytes = tok.tokenBytes(token);
    for (const p of processors) p.accept?.(token, bytes, state);
    result.tokens.push(token);
    result.steps++;
    result.text += utf8.decode(bytes, { stream: true });

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
    if (decision || step + 1 === o.maxTokens) break;
    logits = await backend.forward(cache, [token]);
  }
  result.decodeMs = performance.now() - t1;
  if (healed) result.text = result.text.startsWith(healed) ? result.text.slice(healed.length) : result.text;
  return result;
}

/** Whether any processor rejects the sampled token (awaiting only those that must ask analysis first). */
async function rejected(processors: readonly LogitsProcessor[], token: number, bytes: Uint8Array, state: DecodeState): Promise<boolean> {
  for (const p of processors) {
    const verdict = p.reject?.(token, bytes, state);
    if (verdict === true || (verdict instanceof Promise && (await verdict))) return true;
  }
  return false;
}
