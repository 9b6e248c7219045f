/** Dispatcher for argmax.wgsl: the index of the largest of N floats, on the device. */
import { bindGroup, params, pipeline, type Dispatch, type GpuContext } from './gpu.js';

export function argmax(ctx: GpuContext, x: GPUBuffer, offset: number, N: number, out: GPUBuffer): Dispatch {
  const p = pipeline(ctx, 'argmax', 'main', {});
  const u = params(ctx.device, [N, offset, 0, 0]);
  return { pipeline: p, bindGroup: bindGroup(ctx.device, p, [u, x, out]), grid: [1, 1, 1], transient: [u] };
}
