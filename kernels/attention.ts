/** Dispatcher for attention.wgsl: flash-decoding partials over KV splits, then the reduce. */
import { bindGroup, params, pipeline, type Dispatch, type GpuContext } from './gpu.js';

export interface AttentionArgs {
  M: number;
  nH: number;
  kvH: number;
  hd: number;
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
}

const MAX_SPLITS = 32;

/** Keys per split: a multiple of 64, so that at most MAX_SPLITS splits cover `keys`. */
export function splitLength(keys: number): number {
  return 64 * Math.max(1, Math.ceil(keys / (64 * MAX_SPLITS)));
}

export function partialFloats(M: number, nH: number, hd: number, keys: number): number {
  return M * nH * Math.ceil(keys / splitLength(keys)) * (hd + 2);
}

export function attention(ctx: GpuContext, a: AttentionArgs): Dispatch[] {
  if (a.hd > 256) throw new RangeError(`attention: head width ${a.hd} > 256`);
  if (a.nH % a.kvH) throw new RangeError('attention: nH must be a multiple of kvH');
  const keys = a.pos0 + a.M;
  const splitLen = splitLength(keys);
  const nSplits = Math.ceil(keys / splitLen);
  const u = params(ctx.device, [a.M, a.nH, a.kvH, a.hd, a.pos0, a.cap, splitLen, nSplits, a.window, a.qStride, { f: 1 / Math.sqrt(a.hd) }, 0]);
  const pp = pipeline(ctx, 'attention', 'partial', {});
  const pr = pipeline(ctx, 'attention', 'reduce', {});
  return [
    { pipeline: pp, bindGroup: bindGroup(ctx.device, pp, [u, a.q, a.kv, a.part, null]), grid: [a.nH, a.M, nSplits], transient: [] },
    { pipeline: pr, bindGroup: bindGroup(ctx.device, pr, [u, null, null, a.part, a.out]), grid: [a.nH, a.M, 1], transient: [u] },
  ];
}
