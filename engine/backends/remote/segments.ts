/**
 * Monitor-guided decoding on an engine that cannot change a running request's constraint: the completion is cut
 * into segments at the monitor's triggers.
 *
 *   free segment         stop string "." added: the engine generates until the model writes a dot (excluded)
 *   trigger              ask the monitor what may follow the dot in the document as it is now
 *     names known        one constrained request: "." name, then free text up to the next dot (constraint.ts)
 *     no opinion         the dot is kept and a free segment goes on from it
 *
 * Each request's prompt is the completion's prompt ids followed by our tokenization of the text so far, so the
 * prompt only grows: the engine's prefix cache (vLLM's blocks, SGLang's radix tree, llama.cpp's slot) serves all
 * but the newest text. A completion that starts right after a dot (the prompt's healed `.`) starts with a trigger.
 * A trigger the monitor answers costs exactly one request; one it has no opinion on costs one extra free request.
 */
import { CancelledError } from '../../errors.js';
import { memberSegmentConstraint } from './constraint.js';
import type { RemoteEngine, SegmentResult } from './engines.js';

export interface SegmentMonitor {
  /** The names that may follow a dot written at the end of `generated` (null or [] for no opinion). */
  namesAfterDot(generated: string): Promise<readonly string[] | null>;
}

export interface SegmentDecodeOptions {
  prompt: readonly number[];
  encode(text: string): Promise<number[]>;
  maxTokens: number;
  /** Stop strings of the completion (end of line, ...). */
  stop?: readonly string[];
  temperature?: number;
  seed?: number;
  /** The prompt ends in a dot that is to be regenerated (token healing): start with a trigger. */
  startsAtDot?: boolean;
  monitor: SegmentMonitor | null;
  signal?: AbortSignal;
  /**
   * Stream the completion's text as the engine sends it. A constrained segment's final dot is held back until it
   * is known not to be the start of the next constrained segment (which re-spells it), so no dot is shown twice.
   */
  onText?: (delta: string) => void;
}

export interface SegmentDecodeResult {
  text: string;
  tokens: number;
  requests: number;
  /** Dots the monitor answered: each cost one constrained request. */
  triggers: number;
  /** Dots it had no opinion on. */
  unmonitoredDots: number;
  finish: 'stop' | 'eos' | 'length' | 'cancelled';
}

export async function decodeSegmentwise(engine: RemoteEngine, o: SegmentDecodeOptions): Promise<SegmentDecodeResult> {
  const out: SegmentDecodeResult = { text: '', tokens: 0, requests: 0, triggers: 0, unmonitoredDots: 0, finish: 'length' };
  let emitted = 0;
  /** Streams what is settled: the text so far plus this segment's, less a constrained segment's trailing dot. */
  const emit = (segment: string, holdDot: boolean) => {
    let t = out.text + segment;
    if (holdDot && t.endsWith('.')) t = t.slice(0, -1);
    if (t.length > emitted) o.onText!(t.slice(emitted));
    emitted = Math.max(emitted, t.length);
  };
  const result = await segments(engine, o, out, o.onText ? emit : null);
  if (o.onText) emit('', false);
  return result;
}

async function segments(engine: RemoteEngine, o: SegmentDecodeOptions, out: SegmentDecodeResult, emit: ((segment: string, holdDot: boolean) => void) | null): Promise<SegmentDecodeResult> {
  const userStops = [...(o.stop ?? [])];
  let atDot = o.startsAtDot === true;
  const request = async (constraint: ReturnType<typeof memberSegmentConstraint> | null, stop: string[]): Promise<SegmentResult> => {
    const prompt = [...o.prompt, ...(out.text ? await o.encode(out.text) : [])];
    out.requests++;
    let segment = '';
    const onText = emit ? (d: string) => emit((segment += d), constraint !== null) : undefined;
    const r = await engine.complete({ prompt, maxTokens: o.maxTokens - out.tokens, stop, constraint, temperature: o.temperature ?? 0, seed: o.seed, onText }, o.signal);
    out.tokens += r.tokens;
    return r;
  };
  try {
    while (out.tokens < o.maxTokens) {
      let r: SegmentResult;
      const names = atDot && o.monitor ? await o.monitor.namesAfterDot(out.text) : null;
      if (atDot && names && names.length > 0) {
        out.triggers++;
        r = await request(memberSegmentConstraint(names), userStops);
        out.text += r.text;
        // the constraint ends at the model's next dot (a new trigger: kept out of the text until answered), or the
        // model ended, or a stop string or the budget did
        if (r.finish === 'eos' && r.text.length > 1 && r.text.endsWith('.')) {
          out.text = out.text.slice(0, -1);
          continue;
        }
        return { ...out, finish: r.finish };
      }
      if (atDot) {
        out.unmonitoredDots++;
        out.text += '.';
        atDot = false;
      }
      r = await request(null, [...userStops, '.']);
      out.text += r.text;
      if (r.finish === 'stop' && r.stoppedBy === '.') {
        atDot = true;
        continue;
      }
      return { ...out, finish: r.finish };
    }
    if (atDot) out.text += '.';
    return out;
  } catch (e) {
    if (o.signal?.aborted) return { ...out, finish: 'cancelled' };
    if (e instanceof CancelledError) return { ...out, finish: 'cancelled' };
    throw e;
  }
}
