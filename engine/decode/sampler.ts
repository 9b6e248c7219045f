/**
 * Choosing the next token from logits: greedy (temperature 0) or seeded sampling with temperature, top-k and top-p.
 * The same seed gives the same tokens. Masked tokens (-Infinity) are never chosen; if every token is masked the
 * sampler returns -1 and the loop stops.
 */
import type { TopTokens } from '../backends/logits-row.js';

export interface SamplerOptions {
  temperature?: number;
  topP?: number;
  topK?: number;
  seed?: number;
}

export interface Sampler {
  sample(logits: Float32Array): number;
  /**
   * How many of the best tokens decide this sampler's choice (greedy: 1; top-k sampling: k), or 0 when it needs the
   * whole distribution (plain temperature or top-p without top-k). A non-zero value lets the decode loop ask the
   * backend for only those tokens (LogitsRow.top) and call choose().
   */
  readonly topK: number;
  /** The choice from the best topK tokens (best first, ties to the lower id): the same token sample() picks. */
  choose(best: TopTokens): number;
}

/** The most candidates a sampler asks a backend for (kernels/topk.wgsl answers up to 256). */
export const MAX_SAMPLER_TOP_K = 256;

export function argmax(logits: Float32Array): number {
  let best = -1;
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++)
    if (logits[i]! > max) {
      max = logits[i]!;
      best = i;
    }
  return best;
}

export function createSampler(o: SamplerOptions = {}): Sampler {
  const temperature = o.temperature ?? 0;
  if (!(temperature >= 0)) throw new RangeError(`temperature must be >= 0, got ${temperature}`);
  if (temperature === 0) return { sample: argmax, topK: 1, choose: (best) => (best.ids.length ? best.ids[0]! : -1) };
  const topP = o.topP ?? 1;
  const topK = o.topK ?? 0;
  const random = mulberry32(o.seed ?? 0);

  /**
   * Candidates best first (ties to the lower id) -> softmax at temperature -> the smallest prefix whose mass reaches
   * top-p -> a draw. Candidates more than 20·T below the best (relative probability < 2e-9) are dropped first: they
   * cannot change a top-k choice or a top-p cut below 0.9999 over a 150k vocabulary.
   */
  const draw = (ids: ArrayLike<number>, vals: ArrayLike<number>): number => {
    if (!ids.length || !(vals[0]! > -Infinity)) return -1;
    const max = vals[0]!;
    const floor = max - 20 * temperature;
    let n = 0;
    while (n < ids.length && (topK <= 0 || n < topK) && vals[n]! >= floor) n++;
    const p = Array.from({ length: n }, (_, j) => Math.exp((vals[j]! - max) / temperature));
    const total = p.reduce((a, b) => a + b, 0);
    let keep = n;
    let mass = 0;
    for (let j = 0; j < n; j++) {
      mass += p[j]! / total;
      if (mass >= topP) {
        keep = j + 1;
        break;
      }
    }
    const kept = p.slice(0, keep).reduce((a, b) => a + b, 0);
    let r = random() * kept;
    for (let j = 0; j < keep; j++) {
      r -= p[j]!;
      if (r <= 0) return ids[j]!;
    }
    return ids[keep - 1]!;
  };

  return {
    topK: topK > 0 && topK <= MAX_SAMPLER_TOP_K ? topK : 0,
    choose: (best) => draw(best.ids, best.logits),
    sample(logits) {
      let max = -Infinity;
      for (let i = 0; i < logits.length; i++) if (logits[i]! > max) max = logits[i]!;
      if (max === -Infinity) return -1;
      if (topK <= 0 && topP >= 1) {
        // plain temperature sampling: one pass for the normaliser, one for the draw; no sort over the vocabulary
        let total = 0;
        for (let i = 0; i < logits.length; i++) if (logits[i]! > -Infinity) total += Math.exp((logits[i]! - max) / temperature);
        let r = random() * total;
        let last = -1;
        for (let i = 0; i < logits.length; i++) {
          if (!(logits[i]! > -Infinity)) continue;
          last = i;
          r -= Math.exp((logits[i]! - max) / temperature);
          if (r <= 0) return i;
        }
        return last;
      }
      // only the tokens near the best can be drawn: no sort over the whole vocabulary
      const floor = max - 20 * temperature;
      const idx: number[] = [];
      for (let i = 0; i < logits.length; i++) if (logits[i]! >= floor) idx.push(i);
      idx.sort((a, b) => logits[b]! - logits[a]! || a - b);
      return draw(idx, idx.map((i) => logits[i]!));
    },
  };
}

/** A small 32-bit PRNG (mulberry32): deterministic across machines, good enough for sampling. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
