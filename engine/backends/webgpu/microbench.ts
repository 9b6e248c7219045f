/**
 * Device-side yardsticks for `mgd bench decode --backend webgpu`: the device's buffer-copy bandwidth (the roofline a
 * decode step is read against) and a GEMV microbenchmark on one weight matrix.
 */
import { UniformPool, storage, submit, upload, type GpuContext } from '../../../kernels/gpu.js';
import { QUANT_BLOCK, matmul, uploadMatrixF32, uploadMatrixQuant, type GpuMatrix } from '../../../kernels/matmul.js';
import { quantizeBlocks } from '../../model/quantize.js';

async function timeBest(ctx: GpuContext, run: () => void, repeats: number): Promise<number> {
  run(); // warm-up: pipeline creation, first touch
  await ctx.device.queue.onSubmittedWorkDone();
  let best = Infinity;
  for (let r = 0; r < repeats; r++) {
    const t = performance.now();
    run();
    await ctx.device.queue.onSubmittedWorkDone();
    best = Math.min(best, performance.now() - t);
  }
  return best / 1000;
}

/** GB/s of a device buffer-to-buffer copy, bytes read plus bytes written (as measureCopyGBps counts). */
export async function deviceCopyGBps(ctx: GpuContext, bytes = 128 * 1024 * 1024): Promise<number> {
  const a = storage(ctx.device, bytes);
  const b = storage(ctx.device, bytes);
  try {
    const s = await timeBest(ctx, () => {
      const enc = ctx.device.createCommandEncoder();
      enc.copyBufferToBuffer(a, 0, b, 0, bytes);
      ctx.device.queue.submit([enc.finish()]);
    }, 3);
    return (2 * bytes) / s / 1e9;
  } finally {
    a.destroy();
    b.destroy();
  }
}

/** GB/s of weight bytes streamed by one GEMV (M = 1) over an [N][K] matrix in the given format. */
export async function gemvGBps(ctx: GpuContext, N: number, K: number, format: 'f32' | 'q8' | 'q4'): Promise<number> {
  const w = Float32Array.from({ length: N * K }, (_, i) => Math.sin(i) * 0.1);
  const m: GpuMatrix = format === 'f32' ? uploadMatrixF32(ctx, w, N, K) : uploadMatrixQuant(ctx, quantizeBlocks(w, N, K, format === 'q8' ? 8 : 4, QUANT_BLOCK), format === 'q8' ? 8 : 4, N, K);
  const x = upload(ctx.device, new Float32Array(K).fill(1));
  const y = storage(ctx.device, N * 4);
  try {
    const uniforms = new UniformPool(ctx.device); // the product alone is timed, not a uniform buffer's creation
    const s = await timeBest(ctx, () => submit(ctx.device, [matmul(ctx, { M: 1, x, w: m, y, uniforms })]), 3);
    return m.bytes / s / 1e9;
  } finally {
    for (const b of [m.data, m.scales, x, y]) b?.destroy();
  }
}
