/**
 * Dispatcher for the products y[M][N] = x[M][K] · Wᵀ (HF Linear layout W [N][K]) with optional bias, residual
 * accumulation, RMSNorm of the input and SwiGLU of the input: gemv.wgsl for M = 1 (decode), matmul.wgsl otherwise.
 * Weights are f32, f16 or MatMulNBits blocks of 32 (q8/q4).
 *
 * Layout: every format stores a row as ceil(K/32) whole blocks of 32 values, zero-padded past K (q8/q4 blocks are
 * padded so by quantize.ts; f32 and f16 rows here). The GEMV then reads whole blocks with 16-byte loads and no bounds
 * check; real models' K are multiples of 32, so the padding costs nothing there.
 */
import { f32ToF16 } from '../engine/model/fp16.js';
import { quantizeBlocks, type QuantizedBlocks } from '../engine/model/quantize.js';
import type { GpuTable } from './embedding.js';
import { bindGroup, grid1d, pipeline, uniform, upload, type Dispatch, type GpuContext, type ParamFields, type UniformPool } from './gpu.js';

export const QUANT_BLOCK = 32;

export type MatrixFormat = 'f32' | 'f16' | 'q8' | 'q4';

/** A weight matrix on the device. */
export interface GpuMatrix {
  format: MatrixFormat;
  N: number;
  K: number;
  data: GPUBuffer;
  /** Per-block scales (q8/q4): f32, or f16 packed in pairs when scalesF16. */
  scales: GPUBuffer | null;
  /** q8/q4 scales stored as f16 (2 bytes a block instead of 4: a q4 block is then 18 bytes, not 20). */
  scalesF16?: boolean;
  /** Bytes read per full product (codes + scales, padding included). */
  bytes: number;
}

/** Rows of K values copied into rows of ceil(K/32)·32 (zeros after K); the input itself when K is a multiple of 32. */
function padRows(w: Float32Array, N: number, K: number): Float32Array {
  if (w.length !== N * K) throw new RangeError(`matrix: ${w.length} values for [${N}, ${K}]`);
  const Kp = Math.ceil(K / QUANT_BLOCK) * QUANT_BLOCK;
  if (Kp === K) return w;
  const out = new Float32Array(N * Kp);
  for (let n = 0; n < N; n++) out.set(w.subarray(n * K, (n + 1) * K), n * Kp);
  return out;
}

export function uploadMatrixF32(ctx: GpuContext, w: Float32Array, N: number, K: number, label?: string): GpuMatrix {
  const padded = padRows(w, N, K);
  return { format: 'f32', N, K, data: upload(ctx.device, padded, label), scales: null, bytes: padded.byteLength };
}

/** f16 weights (round to nearest even, engine/model/fp16.ts), packed two per u32, element 2j in the low half. */
export function uploadMatrixF16(ctx: GpuContext, w: Float32Array, N: number, K: number, label?: string): GpuMatrix {
  const half = f32ToF16(padRows(w, N, K));
  return { format: 'f16', N, K, data: upload(ctx.device, half, label), scales: null, bytes: half.byteLength };
}

/** Bytes a matrix of the format occupies on the device (for checks against binding limits before converting). */
export function matrixBytes(format: MatrixFormat, N: number, K: number, scales: 'f32' | 'f16' = 'f32'): number {
  const nBlocks = Math.ceil(K / QUANT_BLOCK);
  const scale = scales === 'f16' ? 2 : 4;
  const perBlock = { f32: 128, f16: 64, q8: 32 + scale, q4: 16 + scale }[format];
  return N * nBlocks * perBlock;
}

/** An f32 matrix in the given format (quantized by engine/model/quantize.ts for q8/q4, scales f32 unless asked). */
export function uploadMatrix(ctx: GpuContext, w: Float32Array, N: number, K: number, format: MatrixFormat, label?: string, o: { scales?: 'f32' | 'f16' } = {}): GpuMatrix {
  if (format === 'f32') return uploadMatrixF32(ctx, w, N, K, label);
  if (format === 'f16') return uploadMatrixF16(ctx, w, N, K, label);
  const bits = format === 'q8' ? 8 : 4;
  return uploadMatrixQuant(ctx, quantizeBlocks(w, N, K, bits, QUANT_BLOCK), bits, N, K, label, o);
}

/**
 * A weight matrix as consecutive row ranges, each its own GpuMatrix within the device's storage binding limit (a
 * single part unless it is larger: llvmpipe allows 128 MiB, under Qwen2.5's lm_head in f16). Each part's product
 * writes its columns of the one output (matmul's yOffset/yStride): one dispatch per part.
 */
export interface SplitMatrix {
  format: MatrixFormat;
  N: number;
  K: number;
  parts: Array<{ n0: number; w: GpuMatrix; bias: GPUBuffer | null }>;
  /** Bytes read per full product, all parts. */
  bytes: number;
}

/** `w` (f32, [N][K]) in the format, in row parts of at most `maxBytes` each (and its bias, sliced the same way). */
export function uploadSplitMatrix(ctx: GpuContext, w: Float32Array, N: number, K: number, format: MatrixFormat, maxBytes: number, o: { scales?: 'f32' | 'f16'; bias?: Float32Array; label?: string } = {}): SplitMatrix {
  const per = Math.max(1, Math.floor(maxBytes / matrixBytes(format, 1, K, o.scales)));
  const parts: SplitMatrix['parts'] = [];
  for (let n0 = 0; n0 < N; n0 += per) {
    const rows = Math.min(per, N - n0);
    const part = uploadMatrix(ctx, w.subarray(n0 * K, (n0 + rows) * K), rows, K, format, o.label && (n0 ? `${o.label}[${n0}..]` : o.label), { scales: o.scales });
    parts.push({ n0, w: part, bias: o.bias ? upload(ctx.device, o.bias.subarray(n0, n0 + rows)) : null });
  }
  return { format, N, K, parts, bytes: parts.reduce((a, p) => a + p.w.bytes, 0) };
}

/** One part: a matrix that fits one binding, as a SplitMatrix. */
export function unsplit(w: GpuMatrix, bias: GPUBuffer | null = null): SplitMatrix {
  return { format: w.format, N: w.N, K: w.K, parts: [{ n0: 0, w, bias }], bytes: w.bytes };
}

/** matmul() over every part of a split matrix into one y ([M][N], the parts' columns side by side). */
export function matmulSplit(ctx: GpuContext, a: Omit<MatmulArgs, 'w' | 'bias' | 'yOffset' | 'yStride'> & { w: SplitMatrix }): Dispatch[] {
  return a.w.parts.map((p) => matmul(ctx, { ...a, w: p.w, bias: p.bias, yOffset: p.n0, yStride: a.w.N }));
}

/**
 * The embedding table as the (tied) lm_head matrix, sharing its buffers part for part: possible when the table's rows
 * are already whole blocks (H a multiple of 32, as in every real model). Null otherwise: the caller uploads a padded
 * copy.
 */
export function matrixOverTable(t: GpuTable): SplitMatrix | null {
  if (t.H % QUANT_BLOCK) return null;
  const bytesPer = t.format === 'f32' ? 4 : 2;
  const parts = t.parts.map((p) => ({ n0: p.r0, w: { format: t.format, N: p.rows, K: t.H, data: p.data, scales: null, bytes: p.rows * t.H * bytesPer } as GpuMatrix, bias: null }));
  return { format: t.format, N: t.V, K: t.H, parts, bytes: t.V * t.H * bytesPer };
}

/**
 * Blocks from engine/model/quantize.ts (block 32): the byte layout is read as u32 words as is. `scales: 'f16'` stores
 * the scales rounded to f16 (the codes stay those chosen for the f32 scale: the rounding moves a value by at most
 * 2^-11 of itself, far inside a q4 or q8 step).
 */
export function uploadMatrixQuant(ctx: GpuContext, q: QuantizedBlocks, bits: 4 | 8, N: number, K: number, label?: string, o: { scales?: 'f32' | 'f16' } = {}): GpuMatrix {
  const nBlocks = Math.ceil(K / QUANT_BLOCK);
  if (q.data.length !== (N * nBlocks * QUANT_BLOCK * bits) / 8 || q.scales.length !== N * nBlocks) throw new RangeError(`matrix: blocks do not fit [${N}, ${K}]`);
  const scales = o.scales === 'f16' ? f32ToF16(q.scales) : q.scales;
  return {
    format: bits === 8 ? 'q8' : 'q4',
    N,
    K,
    data: upload(ctx.device, q.data, label),
    scales: upload(ctx.device, scales, label && `${label}.scales`),
    scalesF16: o.scales === 'f16',
    bytes: q.data.byteLength + scales.byteLength,
  };
}

export interface MatmulArgs {
  M: number;
  x: GPUBuffer;
  /** Elements before x's first row (default 0) and between rows (default K, or 2K with swiglu). */
  xOffset?: number;
  xStride?: number;
  w: GpuMatrix;
  y: GPUBuffer;
  /** Elements before y's first row (default 0) and between rows (default N): a matrix uploaded in row parts (see
   * uploadSplitMatrix) writes each part's columns of one y. */
  yOffset?: number;
  yStride?: number;
  bias?: GPUBuffer | null;
  /** y += x·Wᵀ instead of y = x·Wᵀ. */
  accumulate?: boolean;
  /** RMSNorm the input rows first: x·gamma·rsqrt(mean(x²) + eps). */
  norm?: { gamma: GPUBuffer; eps: number } | null;
  /** The input is [M][2K] (gate, up); x = silu(gate)·up. */
  swiglu?: boolean;
  /** Where the Params buffer comes from (default: a fresh one, released after the submit). */
  uniforms?: UniformPool;
  /** M = 1: the GEMV's shape instead of gemvShape's choice (microbenchmarks, tests). */
  gemv?: Partial<GemvShape>;
}

const TN = 4;

/** How a GEMV workgroup is cut: ROWS output rows, TPR threads per row (both powers of two, ROWS·TPR threads). */
export interface GemvShape {
  rows: number;
  tpr: number;
  /** Blocks a thread loads before adding them up (1..8). */
  unroll: number;
  /** Reduce with subgroup operations (needs the subgroups feature and TPR <= the smallest subgroup size). */
  subgroups: boolean;
}

/**
 * The default GEMV shape for [N][K]: 64 threads; threads per row so that each reads about four blocks (enough loads
 * in flight per thread, few threads idle at short K), then fewer rows per workgroup (more threads per row) until the
 * grid has at least 256 workgroups, so small-N products (o_proj, down_proj) still spread over a large GPU. A
 * starting point, untuned: `mgd bench decode --backend webgpu` sweeps rows per workgroup, threads per workgroup and
 * the unroll (gemvSweep) to tune it on a real device. `o` overrides any part.
 */
export function gemvShape(ctx: GpuContext, N: number, K: number, o: Partial<GemvShape> = {}): GemvShape {
  const nBlocks = Math.ceil(K / QUANT_BLOCK);
  let tpr = Math.min(32, 2 ** Math.max(0, Math.floor(Math.log2(Math.max(1, nBlocks / 4)))));
  let rows = 64 / tpr;
  while (Math.ceil(N / rows) < 256 && rows > 1) {
    rows /= 2;
    tpr *= 2;
  }
  if (o.rows !== undefined) {
    rows = o.rows;
    tpr = o.tpr ?? Math.max(1, 64 / rows);
  } else if (o.tpr !== undefined) tpr = o.tpr;
  const pow2 = (v: number) => Number.isInteger(v) && v >= 1 && (v & (v - 1)) === 0;
  const most = Math.min(256, ctx.device.limits.maxComputeInvocationsPerWorkgroup, ctx.device.limits.maxComputeWorkgroupSizeX);
  if (!pow2(rows) || !pow2(tpr) || rows * tpr > most) throw new RangeError(`gemv: rows ${rows} x threads per row ${tpr} (powers of two, at most ${most} threads on this device)`);
  const f = ctx.features;
  const subgroups = (o.subgroups ?? true) && f.subgroups && tpr <= f.subgroupMinSize;
  const unroll = o.unroll ?? 1;
  if (!Number.isInteger(unroll) || unroll < 1 || unroll > 8) throw new RangeError(`gemv: unroll ${unroll} (1..8)`);
  return { rows, tpr, unroll, subgroups };
}

/** The default unroll per format: about 64 bytes of weights in flight per thread (a q4 block is 16, an f32 one 128). */
export function gemvUnroll(format: MatrixFormat): number {
  return { f32: 1, f16: 1, q8: 2, q4: 4 }[format];
}

/** The cut a GEMV over `w` runs with: gemvShape's, the format's unroll, then the caller's overrides. */
export function gemvShapeFor(ctx: GpuContext, w: GpuMatrix, o: Partial<GemvShape> = {}): GemvShape {
  return gemvShape(ctx, w.N, w.K, { unroll: gemvUnroll(w.format), ...o });
}

/** The Params both products read (matmul.wgsl and gemv.wgsl declare the same struct), in WGSL field order. */
function productParams(a: MatmulArgs): ParamFields {
  const { M, w } = a;
  const xStride = a.xStride ?? (a.swiglu ? 2 * w.K : w.K);
  return [M, w.N, w.K, a.xOffset ?? 0, xStride, Math.ceil(w.K / QUANT_BLOCK), { f: a.norm?.eps ?? 0 }, 0, a.yOffset ?? 0, a.yStride ?? w.N, 0, 0];
}

function gemv(ctx: GpuContext, a: MatmulArgs, fusions: Record<string, boolean>): Dispatch {
  const { w } = a;
  const shape = gemvShapeFor(ctx, w, a.gemv);
  const WG = shape.rows * shape.tpr;
  // x is staged XT values at a time: all of K when it fits in 8 KiB (and the device's limit), else in chunks
  const limit = ctx.device.limits.maxComputeWorkgroupStorageSize - 2 * WG * 4;
  const xtMax = Math.max(QUANT_BLOCK, Math.floor(Math.min(2048, limit / 4) / QUANT_BLOCK) * QUANT_BLOCK);
  const XT = Math.min(Math.ceil(w.K / QUANT_BLOCK) * QUANT_BLOCK, xtMax);
  const p = pipeline(ctx, 'gemv', 'main', { ...fusions, TPR: shape.tpr, ROWS: shape.rows, WG, XT, UNROLL: shape.unroll, SUBGROUPS: shape.subgroups });
  const transient: GPUBuffer[] = [];
  const u = uniform(ctx.device, a.uniforms, productParams(a), transient);
  const bg = bindGroup(ctx.device, p, [u, a.x, w.data, w.scales, a.bias ?? null, a.norm?.gamma ?? null, a.y]);
  const [gx, gy] = grid1d(Math.ceil(w.N / shape.rows));
  return { pipeline: p, bindGroup: bg, grid: [gx, gy, 1], transient };
}

export function matmul(ctx: GpuContext, a: MatmulArgs): Dispatch {
  const { M, w } = a;
  const fusions = {
    F32: w.format === 'f32',
    F16: w.format === 'f16',
    Q8: w.format === 'q8',
    Q4: w.format === 'q4',
    QUANT: w.format === 'q8' || w.format === 'q4',
    SCALES_F16: !!w.scalesF16,
    BIAS: !!a.bias,
    ACCUMULATE: !!a.accumulate,
    NORM: !!a.norm,
    SWIGLU: !!a.swiglu,
  };
  if (M === 1) return gemv(ctx, a, fusions);
  const TM = 4;
  const p = pipeline(ctx, 'matmul', 'main', { ...fusions, TN, TM });
  const transient: GPUBuffer[] = [];
  const u = uniform(ctx.device, a.uniforms, productParams(a), transient);
  const bg = bindGroup(ctx.device, p, [u, a.x, w.data, w.scales, a.bias ?? null, a.norm?.gamma ?? null, a.y]);
  const groupsN = Math.ceil(w.N / TN);
  if (groupsN > 65535) throw new RangeError(`matmul: N = ${w.N} needs ${groupsN} workgroups along x (max 65535)`);
  return { pipeline: p, bindGroup: bg, grid: [groupsN, Math.ceil(M / TM), 1], transient };
}

