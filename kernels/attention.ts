/** Dispatcher for attention.wgsl: flash-decoding partials over KV splits, then the reduce. */
import { bindGroup, params, pipeline, stepValues, uniform, type Dispatch, type GpuContext, type UniformPool } from './gpu.js';

export interface AttentionArgs {
  M: number;
  nH: number;
  kvH: number;
  hd: number;
  /** Position of query row 0; read from `step` when given (then only the grid's size is taken from it, see maxKeys). */
  pos0: number;
  cap: number;
  /** Sliding window (0: full causal attention). */
  window: number;
  /** Query rows: q of head h of row m at m·qStride + h·hd. */
  q: GPUBuffer;
  qStride: number;
  kv: GPUBuffer;
  /** Scratch of at least partialFloats(...) floats. */
  part: GPUBuffer;
  /** [M][nH·hd] */
  out: GPUBuffer;
  /**
   * The per-step uniform (gpu.ts stepValues) for a dispatch recorded once and run at many positions: the partial grid
   * then covers the splits of `maxKeys` keys (default cap), and the splits a step does not use exit at once.
   */
  step?: GPUBuffer;
  maxKeys?: number;
  /** Where the Params buffer comes from (default: a fresh one, released after the submit). */
  uniforms?: UniformPool;
}

const MAX_SPLITS = 32; // attention.wgsl MAX_SPLITS

/** Keys per split: a multiple of 64, so that at most MAX_SPLITS splits cover `keys` (attention.wgsl splitLen). */
export function splitLength(keys: number): number {
  return 64 * Math.max(1, Math.ceil(keys / (64 * MAX_SPLITS)));
}

/** Splits that `keys` keys use (attention.wgsl liveSplits). */
export function splitCount(keys: number): number {
  return Math.ceil(keys / splitLength(keys));
}

/** The most splits any key count up to `keys` uses: the partial grid of a recorded dispatch. */
export function maxSplitCount(keys: number): number {
  return Math.min(MAX_SPLITS, Math.max(1, Math.ceil(keys / 64)));
}

export function partialFloats(M: number, nH: number, hd: number, keys: number): number {
  return M * nH * maxSplitCount(keys) * (hd + 2);
}

export function attention(ctx: GpuContext, a: AttentionArgs): Dispatch[] {
  if (a.hd > 256) throw new RangeError(`attention: head width ${a.hd} > 256`);
  if (a.nH % a.kvH) throw new RangeError('attention: nH must be a multiple of kvH');
  const transient: GPUBuffer[] = [];
  const u = uniform(ctx.device, a.uniforms, [a.M, a.nH, a.kvH, a.hd, a.cap, a.window, a.qStride, { f: 1 / Math.sqrt(a.hd) }], transient);
  let step = a.step;
  if (!step) {
    step = params(ctx.device, [...stepValues(a.pos0)]);
    transient.push(step);
  }
  const splits = a.step ? maxSplitCount(a.maxKeys ?? a.cap) : splitCount(a.pos0 + a.M);
  const pp = pipeline(ctx, 'attention', 'partial', {});
  const pr = pipeline(ctx, 'attention', 'reduce', {});
  return [
    { pipeline: pp, bindGroup: bindGroup(ctx.device, pp, [u, a.q, a.kv, a.part, null, step]), grid: [a.nH, a.M, splits], transient: [] },
    { pipeline: pr, bindGroup: bindGroup(ctx.device, pr, [u, null, null, a.part, a.out, step]), grid: [a.nH, a.M, 1], transient },
  ];
}
