/**
 * Choosing the next token from logits: greedy (temperature 0) or seeded sampling with temperature, top-k and top-p.
 * The same seed gives the same tokens. Masked tokens (-Infinity) are never chosen; if every token is masked the
 * sampler returns -1 and the loop stops.
 */
export interface SamplerOptions {
  temperature?: number;
  topP?: number;
  topK?: number;
  seed?: number;
}

export interface Sampler {
  sample(logits: Float32Array): number;
}

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
  if (temperature === 0) return { sample: argmax };
  const topP = o.topP ?? 1;
  const topK = o.topK ?? 0;
  const random = mulberry32(o.seed ?? 0);
  return {
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
      // Candidates: tokens within e^-20 of the best (relative probability > 2e-9), best first. The tail below that
      // cannot change a top-k choice or a top-p cut below 0.9999 over a 150k vocabulary, and skipping it avoids
      // sorting the whole vocabulary every step.
      const floor = max - 20 * temperature;
      const idx: number[] = [];
      for (let i = 0; i < logits.length; i++) if (logits[i]! >= floor) idx.push(i);
      idx.sort((a, b) => logits[b]! - logits[a]! || a - b);
      const cand = topK > 0 ? idx.slice(0, topK) : idx;
      // softmax at temperature, then the smallest prefix whose mass reaches top-p
      const p = cand.map((i) => Math.exp((logits[i]! - max) / temperature));
      const total = p.reduce((a, b) => a + b, 0);
      let keep = cand.length;
      let mass = 0;
      for (let j = 0; j < cand.length; j++) {
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
        if (r <= 0) return cand[j]!;
      }
      return cand[keep - 1]!;
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
