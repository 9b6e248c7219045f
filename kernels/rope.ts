/** Dispatcher for rope.wgsl: RoPE on q and k of fused projection rows, k and v appended to a layer's KV buffer. */
import { bindGroup, params, pipeline, stepValues, uniform, upload, type Dispatch, type GpuContext, type UniformPool } from './gpu.js';

/** cos/sin of position·invFreq[i] for positions 0..positions-1, [positions][hd/2] each, computed in float64. */
export function ropeTables(ctx: GpuContext, invFreq: Float64Array, positions: number): { cos: GPUBuffer; sin: GPUBuffer } {
  const half = invFreq.length;
  const cos = new Float32Array(positions * half);
  const sin = new Float32Array(positions * half);
  for (let p = 0; p < positions; p++)
    for (let i = 0; i < half; i++) {
      cos[p * half + i] = Math.cos(p * invFreq[i]!);
      sin[p * half + i] = Math.sin(p * invFreq[i]!);
    }
  return { cos: upload(ctx.device, cos, 'rope.cos'), sin: upload(ctx.device, sin, 'rope.sin') };
}

export interface RopeArgs {
  M: number;
  nH: number;
  kvH: number;
  hd: number;
  /** Position of row 0 (checked against cap); read from `step` when given. */
  pos0: number;
  /** Positions the KV buffer holds per head. */
  cap: number;
  qkv: GPUBuffer;
  tables: { cos: GPUBuffer; sin: GPUBuffer };
  kv: GPUBuffer;
  /** The per-step uniform (gpu.ts stepValues) of a dispatch recorded once: its writer checks pos0 + M <= cap. */
  step?: GPUBuffer;
  /** Where the Params buffer comes from (default: a fresh one, released after the submit). */
  uniforms?: UniformPool;
  /** Also write the appended keys and values, [2·kvH][M][hd], into this buffer from element `offset`. */
  fresh?: { buffer: GPUBuffer; offset: number } | null;
}

export function ropeAppend(ctx: GpuContext, a: RopeArgs): Dispatch {
  if (a.pos0 + a.M > a.cap) throw new RangeError(`rope: positions up to ${a.pos0 + a.M} exceed the KV capacity ${a.cap}`);
  const p = pipeline(ctx, 'rope', 'main', { FRESH: !!a.fresh });
  const transient: GPUBuffer[] = [];
  const u = uniform(ctx.device, a.uniforms, [a.nH, a.kvH, a.hd, a.cap, a.M, a.fresh?.offset ?? 0, 0, 0], transient);
  let step = a.step;
  if (!step) {
    step = params(ctx.device, [...stepValues(a.pos0)]);
    transient.push(step);
  }
  const bg = bindGroup(ctx.device, p, [u, a.qkv, a.tables.cos, a.tables.sin, a.kv, step, a.fresh?.buffer ?? null]);
  return { pipeline: p, bindGroup: bg, grid: [a.nH + 2 * a.kvH, a.M, 1], transient };
}
