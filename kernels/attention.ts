/**
 * Dispatchers for causal attention over the KV cache: attention.wgsl (flash-decoding partials over KV splits, then the
 * reduce) for decode and short chunks, prefill-attention.wgsl (Q-tiled, keys staged once per tile of query rows) from
 * PREFILL_MIN_ROWS rows on. `attention()` picks.
 */
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
  /** Scratch of at least partialFloats(...) floats (flash-decoding only; the prefill kernel leaves it alone). */
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

/**
 * Query rows from which a chunk runs the prefill kernel. On llvmpipe it is faster from about 3 rows (2.4-8x at 3-4 rows,
 * 5-11x at 8, 8-14x at 128; kernels/README.md); below 8 the flash pair stays for real GPUs (not measured there),
 * whose grid spreads a few rows' keys over hundreds of workgroups where the prefill grid has ⌈M·nH/kvH / 16⌉ per KV
 * head, each walking every key alone.
 */
export const PREFILL_MIN_ROWS = 8;

/**
 * Floats of the `part` scratch that attention() needs for chunks of up to M rows: only the flash-decoding path uses
 * it, so for fewer than PREFILL_MIN_ROWS rows when the prefill kernel takes the head width (flashDecoding checks).
 */
export function partialFloats(M: number, nH: number, hd: number, keys: number): number {
  const rows = hd % 4 === 0 ? Math.min(M, PREFILL_MIN_ROWS - 1) : M;
  return rows * nH * maxSplitCount(keys) * (hd + 2);
}

/** Causal attention of M query rows: one prefill dispatch from PREFILL_MIN_ROWS rows on, else the flash-decoding pair. */
export function attention(ctx: GpuContext, a: AttentionArgs): Dispatch[] {
  return a.M >= PREFILL_MIN_ROWS && prefillSupports(a) ? [prefillAttention(ctx, a)] : flashDecoding(ctx, a);
}

/** Params (attention.wgsl and prefill-attention.wgsl share the struct) and the step uniform, fresh when not given. */
function uniforms(ctx: GpuContext, a: AttentionArgs, transient: GPUBuffer[]): { u: GPUBuffer; step: GPUBuffer } {
  if (a.hd > 256) throw new RangeError(`attention: head width ${a.hd} > 256`);
  if (a.nH % a.kvH) throw new RangeError('attention: nH must be a multiple of kvH');
  const u = uniform(ctx.device, a.uniforms, [a.M, a.nH, a.kvH, a.hd, a.cap, a.window, a.qStride, { f: 1 / Math.sqrt(a.hd) }], transient);
  let step = a.step;
  if (!step) {
    step = params(ctx.device, [...stepValues(a.pos0)]);
    transient.push(step);
  }
  return { u, step };
}

/** attention.wgsl: partials per (head, row, key split), then the reduce. */
export function flashDecoding(ctx: GpuContext, a: AttentionArgs): Dispatch[] {
  const splits = a.step ? maxSplitCount(a.maxKeys ?? a.cap) : splitCount(a.pos0 + a.M);
  const need = a.M * a.nH * splits * (a.hd + 2) * 4;
  if (a.part.size < need) throw new RangeError(`attention: part holds ${a.part.size} bytes, flash-decoding ${a.M} rows needs ${need}`);
  const transient: GPUBuffer[] = [];
  const { u, step } = uniforms(ctx, a, transient);
  const pp = pipeline(ctx, 'attention', 'partial', {});
  const pr = pipeline(ctx, 'attention', 'reduce', {});
  return [
    { pipeline: pp, bindGroup: bindGroup(ctx.device, pp, [u, a.q, a.kv, a.part, null, step]), grid: [a.nH, a.M, splits], transient: [] },
    { pipeline: pr, bindGroup: bindGroup(ctx.device, pr, [u, null, null, a.part, a.out, step]), grid: [a.nH, a.M, 1], transient },
  ];
}

export interface PrefillTiles {
  /** Query vectors ((row, head) pairs of one KV head) per workgroup. */
  TQ: number;
  /** Keys per staged tile (divides 64). */
  TK: number;
}

/** Workgroup storage of prefill-attention.wgsl in bytes: qs, the padded key/value tile, ps and cs. */
export function prefillStorageBytes(hd: number, t: PrefillTiles): number {
  return 4 * (t.TQ * hd + t.TK * (hd + 4) + t.TQ * t.TK + t.TQ);
}

/**
 * Tiles for head width hd in `limit` bytes of workgroup storage (16 KiB is WebGPU's minimum): 16 query vectors unless
 * their queries would take over half the storage (hd 256 at 16 KiB: 8), then the most keys per tile, up to maxTK,
 * that fit. More query vectors per workgroup means fewer times each key is read; more keys per tile, fewer barriers.
 */
export function prefillTiles(hd: number, limit: number, maxTK = 32): PrefillTiles {
  let TQ = 16;
  while (TQ > 4 && 4 * TQ * hd > limit / 2) TQ /= 2;
  let TK = maxTK;
  while (TK > 1 && prefillStorageBytes(hd, { TQ, TK }) > limit) TK /= 2;
  if (prefillStorageBytes(hd, { TQ, TK }) > limit) throw new RangeError(`attention: head width ${hd} does not fit ${limit} bytes of workgroup storage`);
  return { TQ, TK };
}

/** Whether prefill-attention.wgsl takes these rows: it moves vec4s, so hd and the query stride are multiples of 4. */
export function prefillSupports(a: Pick<AttentionArgs, 'hd' | 'qStride'>): boolean {
  return a.hd % 4 === 0 && a.qStride % 4 === 0;
}

/**
 * prefill-attention.wgsl: one dispatch, a workgroup per TQ (row, head) query vectors of one KV head, writing `out`
 * directly. The grid depends on M, never on pos0, so a recorded dispatch runs at any position. `tiles` defaults to
 * the largest that fit the device's workgroup storage.
 */
export function prefillAttention(ctx: GpuContext, a: AttentionArgs, tiles?: PrefillTiles): Dispatch {
  if (!prefillSupports(a)) throw new RangeError(`attention: the prefill kernel needs hd (${a.hd}) and qStride (${a.qStride}) multiples of 4`);
  const transient: GPUBuffer[] = [];
  const { u, step } = uniforms(ctx, a, transient);
  const { TQ, TK } = tiles ?? prefillTiles(a.hd, ctx.device.limits.maxComputeWorkgroupStorageSize);
  if (64 % TK) throw new RangeError(`attention: key tile ${TK} does not divide 64`);
  const DL = Math.min(16, 2 ** Math.floor(Math.log2(a.hd / 4))); // dim lanes: a power of two, at most hd / 4
  const pp = pipeline(ctx, 'prefill-attention', 'main', { HD: a.hd, TQ, TK, DL });
  const G = a.nH / a.kvH;
  return { pipeline: pp, bindGroup: bindGroup(ctx.device, pp, [u, a.q, a.kv, null, a.out, step]), grid: [Math.ceil((a.M * G) / TQ), a.kvH, 1], transient };
}
