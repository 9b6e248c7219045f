/**
 * Device-side yardsticks for `mgd bench decode --backend webgpu`: the device's buffer-copy bandwidth (the roofline a
 * decode step is read against) and GEMV microbenchmarks (the decode step's products, kernels/gemv.wgsl) per weight
 * format, with a sweep over the GEMV's workgroup cut to tune kernels/matmul.ts's gemvShape on a real device.
 */
import { UniformPool, storage, upload, type GpuContext } from '../../../kernels/gpu.js';
import { gemvShapeFor, matmul, uploadMatrix, type GemvShape, type GpuMatrix, type MatrixFormat } from '../../../kernels/matmul.js';

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

export interface GemvBenchOptions {
  /** The workgroup cut (default: gemvShape's choice for the shape). */
  shape?: Partial<GemvShape>;
  /**
   * Weight bytes streamed per timed submit (default 256 MiB): copies of the matrix, one GEMV each into its own output,
   * in one compute pass. More than the GPU's L2 (50 MiB on an H100), so a copy is never read from cache, and many
   * dispatches per submit, so the submit-to-completion latency (tens of µs) does not pose as slow memory.
   */
  minBytes?: number;
  repeats?: number;
  /** q8/q4: store the scales as f16 (18-byte q4 blocks instead of 20). */
  scales?: 'f32' | 'f16';
}

/**
 * Copies of one [N][K] matrix on the device (enough to stream `minBytes` per submit), an input and one output per
 * copy: made once and measured under any number of workgroup cuts.
 */
class GemvFixture {
  readonly mats: GpuMatrix[];
  readonly x: GPUBuffer;
  readonly ys: GPUBuffer[];
  readonly uniforms: UniformPool; // the products alone are timed, not a uniform buffer's creation

  constructor(
    private readonly ctx: GpuContext,
    N: number,
    K: number,
    format: MatrixFormat,
    o: Omit<GemvBenchOptions, 'shape' | 'repeats'>,
  ) {
    const d = ctx.device;
    const w = Float32Array.from({ length: N * K }, (_, i) => Math.sin(i) * 0.1);
    const first = uploadMatrix(ctx, w, N, K, format, undefined, { scales: o.scales });
    const copies = Math.max(1, Math.ceil((o.minBytes ?? 256 * 1024 * 1024) / first.bytes));
    // the other copies hold the same bytes: copied on the device, not converted again on the host
    this.mats = [first];
    const enc = d.createCommandEncoder();
    for (let i = 1; i < copies; i++) {
      const m: GpuMatrix = { ...first, data: storage(d, first.data.size), scales: first.scales && storage(d, first.scales.size) };
      enc.copyBufferToBuffer(first.data, 0, m.data, 0, first.data.size);
      if (first.scales && m.scales) enc.copyBufferToBuffer(first.scales, 0, m.scales, 0, first.scales.size);
      this.mats.push(m);
    }
    d.queue.submit([enc.finish()]);
    this.x = upload(d, new Float32Array(K).fill(1));
    this.ys = this.mats.map(() => storage(d, N * 4));
    this.uniforms = new UniformPool(d);
  }

  /** GB/s of weight bytes over the best of `repeats` submits, each a GEMV per copy in one compute pass. */
  async measure(shape: Partial<GemvShape> | undefined, repeats: number): Promise<{ GBps: number; shape: GemvShape }> {
    const d = this.ctx.device;
    const ds = this.mats.map((m, i) => matmul(this.ctx, { M: 1, x: this.x, w: m, y: this.ys[i]!, uniforms: this.uniforms, gemv: shape }));
    const s = await timeBest(this.ctx, () => {
      const e = d.createCommandEncoder();
      const pass = e.beginComputePass();
      for (const g of ds) {
        pass.setPipeline(g.pipeline);
        pass.setBindGroup(0, g.bindGroup);
        pass.dispatchWorkgroups(...g.grid);
      }
      pass.end();
      d.queue.submit([e.finish()]);
    }, repeats);
    const bytes = this.mats.length * this.mats[0]!.bytes;
    return { GBps: bytes / s / 1e9, shape: gemvShapeFor(this.ctx, this.mats[0]!, shape) };
  }

  destroy(): void {
    for (const m of this.mats) for (const b of [m.data, m.scales]) b?.destroy();
    for (const b of [this.x, ...this.ys]) b.destroy();
  }
}

/** GB/s of weight bytes streamed by GEMVs (M = 1) over [N][K] matrices in the given format, and the cut measured. */
export async function gemvGBps(ctx: GpuContext, N: number, K: number, format: MatrixFormat, o: GemvBenchOptions = {}): Promise<{ GBps: number; shape: GemvShape }> {
  const f = new GemvFixture(ctx, N, K, format, o);
  try {
    return await f.measure(o.shape, o.repeats ?? 3);
  } finally {
    f.destroy();
  }
}

export type GemvSweepRow = { rows: number; tpr: number; unroll: number; subgroups: boolean; GBps: number };

/**
 * GB/s over workgroup cuts: rows per workgroup 1..32 at 64, 128 and 256 threads (those the device allows), each
 * row's threads the rest, with blocks loaded one or four at a time. What kernels/matmul.ts's gemvShape and gemvUnroll
 * should pick on this device is the best of these; sorted best first.
 */
export async function gemvSweep(ctx: GpuContext, N: number, K: number, format: MatrixFormat, o: Omit<GemvBenchOptions, 'shape'> = {}): Promise<GemvSweepRow[]> {
  const most = Math.min(256, ctx.device.limits.maxComputeInvocationsPerWorkgroup);
  const out: GemvSweepRow[] = [];
  const f = new GemvFixture(ctx, N, K, format, o);
  try {
    for (const threads of [64, 128, 256].filter((t) => t <= most))
      for (const rows of [1, 2, 4, 8, 16, 32])
        for (const unroll of [1, 4]) {
          const r = await f.measure({ rows, tpr: threads / rows, unroll }, o.repeats ?? 3);
          out.push({ ...r.shape, GBps: Math.round(r.GBps * 100) / 100 });
        }
  } finally {
    f.destroy();
  }
  return out.sort((a, b) => b.GBps - a.GBps);
}

/**
 * The process's CPU use (fraction of one core) while it holds the device and does nothing, over `ms`. Dawn's node
 * binding was reported to spin after requestDevice (dawn-gpu/node-webgpu #17); a language server sits idle most of
 * the time, so this says whether the device must be released between requests. Measured 0.000 on llvmpipe (OpenGL
 * ES); a real GPU's backend (Vulkan, Metal, D3D12) may differ.
 */
export async function idleCpuFraction(ms = 2000): Promise<number> {
  const u0 = process.cpuUsage();
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, ms));
  const u = process.cpuUsage(u0);
  return (u.user + u.system) / 1000 / (performance.now() - t0);
}
