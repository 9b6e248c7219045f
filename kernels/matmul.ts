/**
 * Dispatcher for matmul.wgsl: y[M][N] = x[M][K] · Wᵀ (HF Linear layout W [N][K]) with optional bias, residual
 * accumulation, RMSNorm of the input and SwiGLU of the input. Weights are f32 or MatMulNBits blocks of 32 (q8/q4).
 */
import { bindGroup, pipeline, uniform, upload, type Dispatch, type GpuContext, type UniformPool } from './gpu.js';
import type { QuantizedBlocks } from '../engine/model/quantize.js';

export const QUANT_BLOCK = 32;

export type MatrixFormat = 'f32' | 'q8' | 'q4';

/** A weight matrix on the device. */
export interface GpuMatrix {
  format: MatrixFormat;
  N: number;
  K: number;
  data: GPUBuffer;
  /** Per-block scales (q8/q4). */
  scales: GPUBuffer | null;
  /** Bytes read per full product (codes + scales). */
  bytes: number;
}

export function uploadMatrixF32(ctx: GpuContext, w: Float32Array, N: number, K: number, label?: string): GpuMatrix {
  if (w.length !== N * K) throw new RangeError(`matrix: ${w.length} values for [${N}, ${K}]`);
  return { format: 'f32', N, K, data: upload(ctx.device, w, label), scales: null, bytes: w.byteLength };
}

/** Blocks from engine/model/quantize.ts (block 32): the byte layout is read as u32 words as is. */
export function uploadMatrixQuant(ctx: GpuContext, q: QuantizedBlocks, bits: 4 | 8, N: number, K: number, label?: string): GpuMatrix {
  const nBlocks = Math.ceil(K / QUANT_BLOCK);
  if (q.data.length !== (N * nBlocks * QUANT_BLOCK * bits) / 8 || q.scales.length !== N * nBlocks) throw new RangeError(`matrix: blocks do not fit [${N}, ${K}]`);
  return {
    format: bits === 8 ? 'q8' : 'q4',
    N,
    K,
    data: upload(ctx.device, q.data, label),
    scales: upload(ctx.device, q.scales, label && `${label}.scales`),
    bytes: q.data.byteLength + q.scales.byteLength,
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
  bias?: GPUBuffer | null;
  /** y += x·Wᵀ instead of y = x·Wᵀ. */
  accumulate?: boolean;
  /** RMSNorm the input rows first: x·gamma·rsqrt(mean(x²) + eps). */
  norm?: { gamma: GPUBuffer; eps: number } | null;
  /** The input is [M][2K] (gate, up); x = silu(gate)·up. */
  swiglu?: boolean;
  /** Where the Params buffer comes from (default: a fresh one, released after the submit). */
  uniforms?: UniformPool;
}

const TN = 4;

export function matmul(ctx: GpuContext, a: MatmulArgs): Dispatch {
  const { M, w } = a;
  const TM = M === 1 ? 1 : 4;
  const defines = {
    TN,
    TM,
    F32: w.format === 'f32',
    Q8: w.format === 'q8',
    Q4: w.format === 'q4',
    BIAS: !!a.bias,
    ACCUMULATE: !!a.accumulate,
    NORM: !!a.norm,
    SWIGLU: !!a.swiglu,
  };
  const p = pipeline(ctx, 'matmul', 'main', defines);
  const transient: GPUBuffer[] = [];
  const u = uniform(ctx.device, a.uniforms, [
    M,
    w.N,
    w.K,
    a.xOffset ?? 0,
    a.xStride ?? (a.swiglu ? 2 * w.K : w.K),
    Math.ceil(w.K / QUANT_BLOCK),
    { f: a.norm?.eps ?? 0 },
    0,
  ], transient);
  const bg = bindGroup(ctx.device, p, [u, a.x, w.data, w.scales, a.bias ?? null, a.norm?.gamma ?? null, a.y]);
  const groupsN = Math.ceil(w.N / TN);
  if (groupsN > 65535) throw new RangeError(`matmul: N = ${w.N} needs ${groupsN} workgroups along x (max 65535)`);
  return { pipeline: p, bindGroup: bg, grid: [groupsN, Math.ceil(M / TM), 1], transient };
}

