/**
 * What every backend does the same way: the checks a forward() call must pass before any work, and weight
 * stacking (fused QKV / gate-up matrices are concatenations of the checkpoint's matrices).
 */
import type { ModelConfig } from '../model/config.js';
import { BadInputError } from '../errors.js';

/**
 * Rejects a forward() call that cannot run: no tokens, logit rows outside 1..tokens, a context past the model's
 * positions (bad input: a client can cause it), a token id outside the vocabulary. Returns the rows wanted.
 */
export function checkForward(config: ModelConfig, maxPositions: number, cacheLength: number, tokens: readonly number[], logitsFor: number | undefined): number {
  const rows = logitsFor ?? 1;
  if (tokens.length === 0) throw new RangeError('forward: no tokens');
  if (!Number.isInteger(rows) || rows < 1 || rows > tokens.length) throw new RangeError(`forward: logitsFor ${rows} outside 1..${tokens.length}`);
  if (cacheLength + tokens.length > maxPositions) throw new BadInputError(`context of ${cacheLength + tokens.length} tokens exceeds the model's ${maxPositions} positions`);
  for (const t of tokens)
    if (!Number.isInteger(t) || t < 0 || t >= config.vocabSize) throw new RangeError(`forward: token id ${t} outside the vocabulary (${config.vocabSize})`);
  return rows;
}

/** The arrays one after the other. */
export function concatFloat32(parts: readonly Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
