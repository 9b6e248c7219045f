/**
 * Dispatcher for embedding.wgsl: rows of an f32 or f16 table gathered by token id. A table larger than one storage
 * binding (llvmpipe allows 128 MiB; Qwen2.5's 151,936 x 896 table is 272 MB in f16) is kept in row ranges, one
 * dispatch each.
 */
import { f32ToF16 } from '../engine/model/fp16.js';
import { bindGroup, pipeline, uniform, upload, type Dispatch, type GpuContext, type UniformPool } from './gpu.js';

export interface GpuTable {
  format: 'f32' | 'f16';
  V: number;
  H: number;
  /** Consecutive row ranges [r0, r0 + rows), each in its own buffer within the binding limit. */
  parts: Array<{ r0: number; rows: number; data: GPUBuffer }>;
}

/** `maxBytes`: the most bytes one part may hold (default: the device's storage binding limit). */
export function uploadTable(ctx: GpuContext, w: Float32Array, V: number, H: number, format: 'f32' | 'f16', maxBytes = ctx.device.limits.maxStorageBufferBindingSize): GpuTable {
  if (w.length !== V * H) throw new RangeError(`table: ${w.length} values for [${V}, ${H}]`);
  if (format === 'f16' && H % 2) throw new RangeError('table: f16 rows need an even width');
  const rowBytes = H * (format === 'f16' ? 2 : 4);
  const per = Math.max(1, Math.floor(maxBytes / rowBytes));
  const parts: GpuTable['parts'] = [];
  for (let r0 = 0; r0 < V; r0 += per) {
    const rows = Math.min(per, V - r0);
    const slice = w.subarray(r0 * H, (r0 + rows) * H);
    parts.push({ r0, rows, data: upload(ctx.device, format === 'f16' ? f32ToF16(slice) : slice, `embedding[${r0}..]`) });
  }
  return { format, V, H, parts };
}

/** One dispatch per part. `uniforms`: where the Params buffers come from (default: fresh, released after the submit). */
export function embedding(ctx: GpuContext, table: GpuTable, M: number, tokens: GPUBuffer, out: GPUBuffer, uniforms?: UniformPool): Dispatch[] {
  const p = pipeline(ctx, 'embedding', 'main', { F16: table.format === 'f16' });
  return table.parts.map((part) => {
    const transient: GPUBuffer[] = [];
    const u = uniform(ctx.device, uniforms, [M, table.H, table.V, part.r0, part.rows, 0, 0, 0], transient);
    return { pipeline: p, bindGroup: bindGroup(ctx.device, p, [u, tokens, part.data, out]), grid: [M, 1, 1], transient };
  });
}
