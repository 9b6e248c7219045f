/**
 * The last position's logits as the decode loop consumes them: mostly as "the best k tokens among those allowed",
 * rarely as the whole row. A GPU backend keeps the row on the device and answers top-k there (kernels/topk.wgsl), so a
 * decode step reads back k pairs instead of the vocabulary's ~150k floats; a CPU backend wraps its array (hostRow).
 * Both must give the same answer: ids best first, ties to the lower id (what the host argmax picks), tokens whose bit
 * is clear in `allowed`, at or past `limit`, or whose logit is -Infinity (masked, as processors mask) never returned.
 */
import type { Backend, KvCache, RowOptions } from './backend.js';

export interface TopTokens {
  /** Best first; fewer than k when fewer tokens are allowed. */
  ids: Uint32Array;
  logits: Float32Array;
}

export interface LogitsRow {
  readonly vocabSize: number;
  /**
   * The k best tokens among ids < limit whose bit is set in `allowed` (u32 words, bit i & 31 of word i >> 5; null:
   * every id), best first, ties to the lower id.
   */
  top(k: number, allowed: Uint32Array | null, limit: number): Promise<TopTokens>;
  /** A copy of the whole row, for samplers and processors that need the distribution. */
  read(): Promise<Float32Array>;
}

/** backend.forwardRow where the backend has it, else its forward() wrapped in hostRow: the same answers either way. */
export async function forwardRowOf(backend: Backend, cache: KvCache, tokens: readonly number[], opts: RowOptions = {}): Promise<LogitsRow> {
  return backend.forwardRow ? backend.forwardRow(cache, tokens, opts) : hostRow(await backend.forward(cache, tokens, { signal: opts.signal }));
}

/** A row already on the host (the CPU backends, and any backend's forward()). */
export function hostRow(logits: Float32Array): LogitsRow {
  return {
    vocabSize: logits.length,
    top: async (k, allowed, limit) => topOf(logits, k, allowed, limit),
    read: async () => logits.slice(),
  };
}

/** top() over a host array: one pass keeping the k best in a small sorted list. */
export function topOf(logits: Float32Array, k: number, allowed: Uint32Array | null, limit: number): TopTokens {
  const n = Math.min(limit, logits.length);
  const ids: number[] = [];
  const vals: number[] = [];
  for (let i = 0; i < n; i++) {
    if (allowed && ((allowed[i >>> 5] ?? 0) & (1 << (i & 31))) === 0) continue;
    const v = logits[i]!;
    if (!(v > -Infinity) || (ids.length === k && !(v > vals[k - 1]!))) continue; // later ids lose ties
    let at = ids.length === k ? k - 1 : ids.length;
    while (at > 0 && v > vals[at - 1]!) at--;
    ids.splice(at, 0, i);
    vals.splice(at, 0, v);
    if (ids.length > k) {
      ids.pop();
      vals.pop();
    }
  }
  return { ids: Uint32Array.from(ids), logits: Float32Array.from(vals) };
}
