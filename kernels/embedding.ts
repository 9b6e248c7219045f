/** Dispatcher for embedding.wgsl: rows of an f32 or f16 table gathered by token id. */
import { f32ToF16 } from '../engine/model/fp16.js';
import { bindGroup, pipeline, uniform, upload, type Dispatch, type GpuContext, type UniformPool } from './gpu.js';

export interface GpuTable {
  format: 'f32' | 'f16';
  V: number;
  H: number;
  data: GPUBuffer;
}

export function uploadTable(ctx: GpuContext, w: Float32Array, V: number, H: number, format: 'f32' | 'f16'): GpuTable {
  if (w.length !== V * H) throw new RangeError(`table: ${w.length} values for [${V}, ${H}]`);
  if (format === 'f16' && H % 2) throw new RangeError('table: f16 rows need an even width');
  return { format, V, H, data: upload(ctx.device, format === 'f16' ? f32ToF16(w) : w, 'embedding') };
}

/** `uniforms`: where the Params buffer comes from (default: a fresh one, released after the submit). */
export function embedding(ctx: GpuContext, table: GpuTable, M: number, tokens: GPUBuffer, out: GPUBuffer, uniforms?: UniformPool): Dispatch {
  const p = pipeline(ctx, 'embedding', 'main', { F16: table.format === 'f16' });
  const transient: GPUBuffer[] = [];
  const u = uniform(ctx.device, uniforms, [M, table.H, table.V, 0], transient);
  return { pipeline: p, bindGroup: bindGroup(ctx.device, p, [u, tokens, table.data, out]), grid: [M, 1, 1], transient };
}
