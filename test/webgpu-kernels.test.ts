/**
 * Each WGSL kernel against a float64 TypeScript reference, on fresh random inputs (seed printed on failure) and
 * shapes that are not multiples of the kernels' tiles (TN = 4 columns, TM = 4 rows, 8-wide K groups, 32-wide weight
 * blocks, the GEMV's rows per workgroup and staged x chunks, 64-key splits, 1024-value top-k chunks).
 * Reduced-precision weights (f16, q8, q4) are checked against the float64 product of the weights the kernel decodes
 * (f16-rounded, dequantized).
 * Feature variants (subgroups) run where the adapter grants them, beside the core fallback; llvmpipe grants none.
 * Runs on whatever adapter Dawn offers; on a machine without a GPU that is Mesa's llvmpipe through OpenGL ES.
 * Tolerance: f32 accumulation over <= a few hundred O(1) terms, 1e-5 relative to the result's scale.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attention, partialFloats } from '../kernels/attention.js';
import { embedding, uploadTable } from '../kernels/embedding.js';
import { UNIFORM, UniformPool, openGpu, readBack, stepValues, storage, submit, upload, withIncludes, type GpuContext } from '../kernels/gpu.js';
import { NO_FEATURES } from '../kernels/gpu.js';
import { gemvShapeFor, matmul, matmulSplit, matrixBytes, matrixOverTable, unsplit, uploadMatrix, uploadMatrixF32, uploadMatrixQuant, uploadSplitMatrix, type GpuMatrix, type MatrixFormat } from '../kernels/matmul.js';
import { ropeAppend, ropeTables } from '../kernels/rope.js';
import { MAX_TOP_K, decodeTopK, topK, topKPasses, topKScratchBytes } from '../kernels/topk.js';
import { argmax } from '../engine/decode/sampler.js';
import { f16ToF32, f32ToF16 } from '../engine/model/fp16.js';
import { dequantize, quantizeBlocks } from '../engine/model/quantize.js';
import { expectClose, rand, randn, seed } from './numeric.js';

let ctx: GpuContext | null = null;
let nullInstance: GPU | null = null; // Dawn's null backend (compiles shaders, runs nothing); see the feature-variant test

async function read(buf: GPUBuffer, floats: number): Promise<Float32Array> {
  return new Float32Array(await readBack(ctx!.device, buf, 0, floats * 4));
}

beforeAll(async () => {
  ctx = await openGpu();
});
afterAll(() => ctx?.device.destroy());

describe('webgpu kernels', () => {
  it('a validation error the code did not catch goes to stderr in one line, never to stdout (the LSP stream)', () => {
    // a child process: Dawn writes an uncaught error natively, so only the process's real stdout shows it
    const gpuJs = fileURLToPath(new URL('../dist/kernels/gpu.js', import.meta.url));
    const script = `const { openGpu } = await import(${JSON.stringify(gpuJs)});
      const ctx = await openGpu();
      ctx.device.createBuffer({ size: 2 ** 40, usage: 0x80 }); // over any device's maxBufferSize
      await ctx.device.queue.onSubmittedWorkDone();
      await new Promise((r) => setTimeout(r, 200));
      process.stdout.write('done');
      process.exit(0);`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
    expect(r.stdout).toBe('done');
    expect(r.stderr).toMatch(/^mgd: webgpu: .*max buffer size.*$/m);
  });

  it('#include pastes a shared declaration file once per shader', () => {
    const src = withIncludes('#include attention-params\n#include step\n#include step\nfn f() {}');
    expect(src.match(/struct Step \{/g)?.length).toBe(1);
    expect(src.match(/struct Params \{/g)?.length).toBe(1);
    expect(src).not.toMatch(/#include/);
    expect(src.endsWith('fn f() {}')).toBe(true);
  });

  it('has an adapter (llvmpipe at least)', () => {
    expect(ctx, 'no WebGPU adapter: Dawn needs libEGL/libGLESv2 from Mesa (apt: libegl1 libgles2 libegl-mesa0 libgl1-mesa-dri)').not.toBeNull();
  });

  // y = x·Wᵀ (+ bias) (+ y) with x optionally RMS-normalized or SwiGLU'd, in float64
  function refMatmul(M: number, N: number, K: number, x: Float32Array, W: ArrayLike<number>, o: { bias?: Float32Array; y0?: Float32Array; gamma?: Float32Array; eps?: number; swiglu?: boolean }): Float64Array {
    const y = new Float64Array(M * N);
    for (let m = 0; m < M; m++) {
      const xr = new Float64Array(K);
      for (let k = 0; k < K; k++) {
        if (o.swiglu) {
          const a = x[m * 2 * K + k]!;
          xr[k] = (a / (1 + Math.exp(-a))) * x[m * 2 * K + K + k]!;
        } else xr[k] = x[m * K + k]!;
      }
      if (o.gamma) {
        let ss = 0;
        for (let k = 0; k < K; k++) ss += xr[k]! * xr[k]!;
        const r = 1 / Math.sqrt(ss / K + o.eps!);
        for (let k = 0; k < K; k++) xr[k] = xr[k]! * r * o.gamma[k]!;
      }
      for (let n = 0; n < N; n++) {
        let s = o.bias ? o.bias[n]! : 0;
        for (let k = 0; k < K; k++) s += xr[k]! * W[n * K + k]!;
        y[m * N + n] = s + (o.y0 ? o.y0[m * N + n]! : 0);
      }
    }
    return y;
  }

  /** The matrix on the device and the weights its kernels decode (the float64 reference multiplies by these). */
  function weights(fmt: MatrixFormat, N: number, K: number, scale = 0.5): { w: GpuMatrix; Wd: ArrayLike<number> } {
    const W = randn(N * K, scale);
    if (fmt === 'f32') return { w: uploadMatrixF32(ctx!, W, N, K), Wd: W };
    if (fmt === 'f16') return { w: uploadMatrix(ctx!, W, N, K, 'f16'), Wd: f16ToF32(f32ToF16(W)) };
    const bits = fmt === 'q8' ? 8 : 4;
    return { w: uploadMatrix(ctx!, W, N, K, fmt), Wd: dequantize(quantizeBlocks(W, N, K, bits, 32), N, K, bits, 32) };
  }

  const shapes: Array<[number, number, number]> = [
    [1, 37, 53],
    [1, 64, 160],
    [1, 5, 7],
    [5, 30, 71],
    [9, 13, 96],
  ];
  for (const fmt of ['f32', 'f16', 'q8', 'q4'] as const)
    for (const [M, N, K] of shapes)
      it(`matmul ${fmt} M=${M} N=${N} K=${K}`, async () => {
        const { w, Wd } = weights(fmt, N, K);
        const x = randn(M * K);
        const y = storage(ctx!.device, M * N * 4);
        submit(ctx!.device, [matmul(ctx!, { M, x: upload(ctx!.device, x), w, y })]);
        expectClose(await read(y, M * N), refMatmul(M, N, K, x, Wd, {}));
      });

  // The decode GEMV (M = 1) in every format x fusion x workgroup cut, with K past the staged chunk of x (2048) and
  // N not a multiple of the rows per workgroup; the subgroup reduction too where the adapter grants it.
  // (the formats' default unrolls run in the cases without an explicit one)
  const featureSets = () => [{ name: 'core', features: NO_FEATURES }, ...(ctx!.features.subgroups ? [{ name: 'subgroups', features: ctx!.features }] : [])];
  for (const fmt of ['f32', 'f16', 'q8', 'q4'] as const)
    it(`gemv ${fmt}: fusions, workgroup cuts, chunked x`, async () => {
      const d = ctx!.device;
      for (const { name, features } of featureSets()) {
        const c = { ...ctx!, features };
        const cases: Array<{ N: number; K: number; cut?: { rows: number; tpr?: number; unroll?: number }; fused: 'none' | 'norm' | 'swiglu' }> = [
          { N: 45, K: 200, fused: 'none' },
          { N: 45, K: 200, cut: { rows: 1, tpr: 64 }, fused: 'norm' },
          { N: 45, K: 200, cut: { rows: 16, tpr: 4 }, fused: 'swiglu' },
          { N: 45, K: 200, cut: { rows: 8, tpr: 2, unroll: 3 }, fused: 'norm' },
          { N: 45, K: 200, cut: { rows: 4, tpr: 16, unroll: 4 }, fused: 'none' },
          { N: 19, K: 130, cut: { rows: 64, tpr: 1 }, fused: 'norm' },
          { N: 33, K: 96, cut: { rows: 1, tpr: 128 }, fused: 'none' },
          { N: 33, K: 96, cut: { rows: 32, tpr: 4 }, fused: 'none' },
          { N: 7, K: 2500, fused: 'norm' },
          { N: 9, K: 4130, cut: { rows: 4, tpr: 16, unroll: 8 }, fused: 'swiglu' },
          { N: 9, K: 4130, cut: { rows: 2, tpr: 32, unroll: 1 }, fused: 'norm' },
        ];
        for (const { N, K, cut, fused } of cases) {
          const { w, Wd } = weights(fmt, N, K);
          const off = 3; // x starts at element 3: the lm_head reads the last row of h so
          const x = randn(off + (fused === 'swiglu' ? 2 * K : K), fused === 'norm' ? 3 : 1);
          const bias = randn(N);
          const gamma = randn(K);
          const y0 = randn(N);
          const y = upload(d, y0);
          const norm = fused === 'norm' ? { gamma: upload(d, gamma), eps: 1e-5 } : null;
          const accumulate = fused !== 'swiglu';
          submit(d, [matmul(c, { M: 1, x: upload(d, x), xOffset: off, w, y, bias: upload(d, bias), accumulate, norm, swiglu: fused === 'swiglu', gemv: cut })]);
          const want = refMatmul(1, N, K, x.subarray(off), Wd, { bias, y0: accumulate ? y0 : undefined, gamma: norm ? gamma : undefined, eps: 1e-5, swiglu: fused === 'swiglu' });
          const label = `${name} N=${N} K=${K} ${JSON.stringify(gemvShapeFor(c, w, cut))} ${fused}`;
          expectClose(await read(y, N), want, 1e-5, label);
        }
      }
    });

  it('feature variants compile where llvmpipe cannot run them (Tint through Dawn\'s null backend)', async () => {
    // The null adapter offers subgroups and shader-f16 and validates shaders fully (parse, types, uniformity) but
    // runs nothing: this catches a WGSL error in a branch only a real GPU would take. Results are checked by the
    // tests above wherever an adapter grants the features.
    const { create } = await import('webgpu');
    // the instance is kept (module scope) for the whole file: collected while its device lives, it takes the process
    // down at a random later moment (gpu.ts keeps the main one in the context for the same reason)
    nullInstance ??= create(['backend=null']);
    const adapter = await nullInstance.requestAdapter();
    if (!adapter?.features.has('subgroups')) return; // a Dawn build without the null backend's features: nothing to check
    const device = await adapter.requestDevice({ requiredFeatures: ['subgroups'] as GPUFeatureName[] });
    const c: GpuContext = { ...ctx!, device, instance: nullInstance, pipelines: new Map(), features: { shaderF16: false, subgroups: true, subgroupMinSize: 32 } };
    try {
      const x = storage(device, 4096 * 8);
      const y = storage(device, 4096);
      const v = storage(device, 4096);
      for (const fmt of ['f32', 'f16', 'q8', 'q4'] as const) {
        const w: GpuMatrix = { format: fmt, N: 64, K: 96, data: storage(device, 64 * 3 * 128), scales: fmt[0] === 'q' ? storage(device, 64 * 3 * 4) : null, bytes: 0 };
        for (const fused of [{}, { norm: { gamma: v, eps: 1e-6 }, bias: v, accumulate: true }, { swiglu: true, accumulate: true }])
          for (const cut of [{ rows: 2, tpr: 32 }, { rows: 64, tpr: 1 }, { rows: 16, tpr: 4, unroll: 3 }]) {
            device.pushErrorScope('validation');
            const d = matmul(c, { M: 1, x, w, y, ...fused, gemv: cut });
            const err = await device.popErrorScope();
            expect(err?.message ?? null, `${fmt} ${JSON.stringify(fused)} ${JSON.stringify(cut)}`).toBeNull();
            expect(d.pipeline.label).toMatch(/SUBGROUPS=true/);
          }
      }
    } finally {
      device.destroy();
    }
  });

  it('q8 and q4 with f16 scales (GEMV and GEMM)', async () => {
    const d = ctx!.device;
    for (const fmt of ['q8', 'q4'] as const)
      for (const [M, N, K] of [[1, 37, 200], [1, 5, 2100], [6, 19, 71]] as const) {
        const bits = fmt === 'q8' ? 8 : 4;
        const W = randn(N * K, 0.5);
        const q = quantizeBlocks(W, N, K, bits, 32);
        const w = uploadMatrixQuant(ctx!, q, bits, N, K, undefined, { scales: 'f16' });
        expect(w.bytes).toBe(q.data.byteLength + 2 * q.scales.length);
        const Wd = dequantize({ data: q.data, scales: f16ToF32(f32ToF16(q.scales)) }, N, K, bits, 32);
        const x = randn(M * K);
        const y = storage(d, M * N * 4);
        submit(d, [matmul(ctx!, { M, x: upload(d, x), w, y })]);
        expectClose(await read(y, M * N), refMatmul(M, N, K, x, Wd, {}), 1e-5, `${fmt} M=${M} N=${N} K=${K}`);
      }
  });

  it('gemv over more than 65535 workgroups (the grid spreads over y)', async () => {
    const [N, K] = [70001, 40];
    const { w, Wd } = weights('q4', N, K);
    const x = randn(K);
    const y = storage(ctx!.device, N * 4);
    submit(ctx!.device, [matmul(ctx!, { M: 1, x: upload(ctx!.device, x), w, y, gemv: { rows: 1, tpr: 64 } })]);
    expectClose(await read(y, N), refMatmul(1, N, K, x, Wd, {}));
  });

  it('the embedding table shared as a tied lm_head (f32 and f16, whole or in row parts), rows padded when H is not a multiple of 32', async () => {
    const d = ctx!.device;
    for (const format of ['f32', 'f16'] as const)
      for (const H of [64, 38])
        for (const rowsPerPart of [Infinity, 6]) {
          const V = 21;
          const table = randn(V * H);
          const t = uploadTable(ctx!, table, V, H, format, rowsPerPart * H * (format === 'f32' ? 4 : 2));
          expect(t.parts.length).toBe(rowsPerPart === Infinity ? 1 : 4);
          const shared = matrixOverTable(t);
          expect(shared === null).toBe(H % 32 !== 0);
          const w = shared ?? unsplit(uploadMatrix(ctx!, table, V, H, format));
          const Wd = format === 'f16' ? f16ToF32(f32ToF16(table)) : table;
          for (const M of [1, 3]) {
            const x = randn(M * H);
            const y = storage(d, M * V * 4);
            submit(d, matmulSplit(ctx!, { M, x: upload(d, x), w, y }));
            expectClose(await read(y, M * V), refMatmul(M, V, H, x, Wd, {}));
          }
        }
  });

  it('a matrix split into row parts (binding limit) gives the whole product, with bias, norm and accumulate', async () => {
    const d = ctx!.device;
    const [N, K] = [45, 70];
    for (const fmt of ['f32', 'f16', 'q8', 'q4'] as const) {
      const W = randn(N * K, 0.5);
      const Wd = fmt === 'f32' ? W : fmt === 'f16' ? f16ToF32(f32ToF16(W)) : dequantize(quantizeBlocks(W, N, K, fmt === 'q8' ? 8 : 4, 32), N, K, fmt === 'q8' ? 8 : 4, 32);
      const bias = randn(N);
      const gamma = randn(K);
      // parts of 16 rows: 16, 16, 13 (the last part short)
      const w = uploadSplitMatrix(ctx!, W, N, K, fmt, matrixBytes(fmt, 16, K, 'f32'), { bias });
      expect(w.parts.map((p) => p.w.N)).toEqual([16, 16, 13]);
      expect(w.bytes).toBe(matrixBytes(fmt, N, K));
      for (const M of [1, 4]) {
        const x = randn(M * K);
        const y0 = randn(M * N);
        const y = upload(d, y0);
        submit(d, matmulSplit(ctx!, { M, x: upload(d, x), w, y, norm: { gamma: upload(d, gamma), eps: 1e-5 }, accumulate: true }));
        expectClose(await read(y, M * N), refMatmul(M, N, K, x, Wd, { bias, y0, gamma, eps: 1e-5 }), fmt === 'f32' ? 1e-5 : 1e-4);
      }
    }
  });

  it('matmul with bias, RMSNorm input and residual accumulate', async () => {
    const [M, N, K] = [6, 19, 45];
    const W = randn(N * K);
    const x = randn(M * K, 3);
    const bias = randn(N);
    const gamma = randn(K);
    const y0 = randn(M * N);
    const y = upload(ctx!.device, y0);
    const w = uploadMatrixF32(ctx!, W, N, K);
    const d = ctx!.device;
    submit(d, [matmul(ctx!, { M, x: upload(d, x), w, y, bias: upload(d, bias), accumulate: true, norm: { gamma: upload(d, gamma), eps: 1e-6 } })]);
    expectClose(await read(y, M * N), refMatmul(M, N, K, x, W, { bias, y0, gamma, eps: 1e-6 }));
  });

  it('matmul with SwiGLU input, from a row offset', async () => {
    const [M, N, K] = [3, 21, 40];
    const W = randn(N * K);
    const x = randn((M + 2) * 2 * K);
    const w = uploadMatrixF32(ctx!, W, N, K);
    const y = storage(ctx!.device, M * N * 4);
    submit(ctx!.device, [matmul(ctx!, { M, x: upload(ctx!.device, x), xOffset: 2 * 2 * K, w, y, swiglu: true })]);
    expectClose(await read(y, M * N), refMatmul(M, N, K, x.subarray(2 * 2 * K), W, { swiglu: true }));
  });

  it('rope + KV append (and the packed copy of the new rows), then attention (decode and causal prefill, GQA, sliding window)', async () => {
    const d = ctx!.device;
    const [nH, kvH, hd, cap] = [6, 2, 24, 200];
    const half = hd / 2;
    const inv = Float64Array.from({ length: half }, (_, i) => 1 / Math.pow(10000, (2 * i) / hd));
    const tables = ropeTables(ctx!, inv, cap);
    const kv = storage(d, 2 * kvH * cap * hd * 4);
    const stride = (nH + 2 * kvH) * hd;
    // reference state: rotated keys and values per position, [pos][kvH*hd]
    const keys: Float64Array[] = [];
    const vals: Float64Array[] = [];
    const rot = (x: Float32Array, off: number, pos: number) => {
      const out = new Float64Array(hd);
      for (let i = 0; i < half; i++) {
        const c = Math.cos(pos * inv[i]!);
        const s = Math.sin(pos * inv[i]!);
        out[i] = x[off + i]! * c - x[off + i + half]! * s;
        out[i + half] = x[off + i + half]! * c + x[off + i]! * s;
      }
      return out;
    };
    let pos0 = 0;
    // a prefill of 70 rows (two splits), a decode step, another prefill of 3, decode again; window on the last
    for (const [M, window] of [[70, 0], [1, 0], [3, 0], [1, 0], [2, 17]] as const) {
      const qkvHost = randn(M * stride, 2);
      const qkv = upload(d, qkvHost);
      const part = storage(d, partialFloats(M, nH, hd, pos0 + M) * 4);
      const out = storage(d, M * nH * hd * 4);
      const fresh = storage(d, (7 + 2 * kvH * M * hd) * 4); // the appended rows again, [2·kvH][M][hd] from element 7
      submit(d, [ropeAppend(ctx!, { M, nH, kvH, hd, pos0, cap, qkv, tables, kv, fresh: { buffer: fresh, offset: 7 } }), ...attention(ctx!, { M, nH, kvH, hd, pos0, cap, window, q: qkv, qStride: stride, kv, part, out })]);
      const expected = new Float64Array(M * nH * hd);
      const expectedQ = new Float64Array(M * stride);
      for (let m = 0; m < M; m++) {
        const pos = pos0 + m;
        const k = new Float64Array(kvH * hd);
        const v = new Float64Array(kvH * hd);
        for (let h = 0; h < kvH; h++) {
          k.set(rot(qkvHost, m * stride + (nH + h) * hd, pos), h * hd);
          for (let j = 0; j < hd; j++) v[h * hd + j] = qkvHost[m * stride + (nH + kvH + h) * hd + j]!;
        }
        keys.push(k);
        vals.push(v);
        expectedQ.set(qkvHost.subarray(m * stride, (m + 1) * stride), m * stride);
        for (let h = 0; h < nH; h++) {
          const q = rot(qkvHost, m * stride + h * hd, pos);
          expectedQ.set(q, m * stride + h * hd);
          const kh = Math.floor(h / (nH / kvH));
          const T = pos + 1;
          const first = window ? Math.max(0, T - window) : 0;
          const sc: number[] = [];
          for (let t = first; t < T; t++) {
            let s = 0;
            for (let j = 0; j < hd; j++) s += q[j]! * keys[t]![kh * hd + j]!;
            sc.push(s / Math.sqrt(hd));
          }
          const mx = Math.max(...sc);
          const e = sc.map((s) => Math.exp(s - mx));
          const sum = e.reduce((a, b) => a + b, 0);
          for (let t = first; t < T; t++)
            for (let j = 0; j < hd; j++) expected[(m * nH + h) * hd + j]! += (e[t - first]! / sum) * vals[t]![kh * hd + j]!;
        }
      }
      const wantFresh = new Float64Array(2 * kvH * M * hd);
      for (let m = 0; m < M; m++)
        for (let h = 0; h < kvH; h++) {
          wantFresh.set(keys[pos0 + m]!.subarray(h * hd, (h + 1) * hd), (h * M + m) * hd);
          wantFresh.set(vals[pos0 + m]!.subarray(h * hd, (h + 1) * hd), ((kvH + h) * M + m) * hd);
        }
      expectClose((await read(fresh, 7 + 2 * kvH * M * hd)).subarray(7), wantFresh);
      expectClose(await read(qkv, M * stride), expectedQ);
      expectClose(await read(out, M * nH * hd), expected);
      pos0 += M;
    }
    // the cache holds every rotated key and value at its position
    const all = await read(kv, 2 * kvH * cap * hd);
    const gotK = new Float64Array(pos0 * kvH * hd);
    const wantK = new Float64Array(pos0 * kvH * hd);
    for (let t = 0; t < pos0; t++)
      for (let h = 0; h < kvH; h++)
        for (let j = 0; j < hd; j++) {
          gotK[(t * kvH + h) * hd + j] = all[(h * cap + t) * hd + j]! - all[((kvH + h) * cap + t) * hd + j]!;
          wantK[(t * kvH + h) * hd + j] = keys[t]![h * hd + j]! - vals[t]![h * hd + j]!;
        }
    expectClose(Float32Array.from(gotK), wantK);
  });

  it('attention recorded once runs at any position (per-step uniform, fixed grid, idle splits)', async () => {
    // one dispatch list per M, reused at several pos0 through queue.writeBuffer, as the backend's plans are; cap
    // 2200 makes a grid of 32 splits, of which small positions use 1 and pos0 ~2150 uses 17 splits of 128 keys
    const d = ctx!.device;
    const [nH, kvH, hd, cap] = [4, 2, 16, 2200];
    const kvHost = randn(2 * kvH * cap * hd, 1.5);
    const kv = upload(d, kvHost);
    const step = d.createBuffer({ size: 16, usage: UNIFORM });
    const uniforms = new UniformPool(d);
    for (const [M, window] of [[1, 0], [3, 0], [2, 100]] as const) {
      const qHost = randn(M * nH * hd, 2);
      const q = upload(d, qHost);
      const part = storage(d, partialFloats(M, nH, hd, cap) * 4);
      const out = storage(d, M * nH * hd * 4);
      const ds = attention(ctx!, { M, nH, kvH, hd, pos0: 0, cap, window, q, qStride: nH * hd, kv, part, out, step, maxKeys: cap, uniforms });
      expect(ds[0]!.grid[2]).toBe(32);
      for (const pos0 of [0, 5, 64, 700, 2150, cap - M]) {
        d.queue.writeBuffer(step, 0, stepValues(pos0));
        submit(d, ds);
        const want = new Float64Array(M * nH * hd);
        for (let m = 0; m < M; m++)
          for (let h = 0; h < nH; h++) {
            const kh = Math.floor(h / (nH / kvH));
            const T = pos0 + m + 1;
            const first = window ? Math.max(0, T - window) : 0;
            const sc: number[] = [];
            for (let t = first; t < T; t++) {
              let dot = 0;
              for (let j = 0; j < hd; j++) dot += qHost[(m * nH + h) * hd + j]! * kvHost[(kh * cap + t) * hd + j]!;
              sc.push(dot / Math.sqrt(hd));
            }
            const mx = Math.max(...sc);
            const e = sc.map((x) => Math.exp(x - mx));
            const sum = e.reduce((a, b) => a + b, 0);
            for (let t = first; t < T; t++)
              for (let j = 0; j < hd; j++) want[(m * nH + h) * hd + j]! += (e[t - first]! / sum) * kvHost[((kvH + kh) * cap + t) * hd + j]!;
          }
        expectClose(await read(out, M * nH * hd), want);
      }
    }
  });

  it('embedding lookup, f32 and f16 tables', async () => {
    const d = ctx!.device;
    const [V, H] = [50, 38];
    const table = randn(V * H);
    const toks = Uint32Array.of(3, 49, 0, 3, 17);
    for (const format of ['f32', 'f16'] as const) {
      const out = storage(d, toks.length * H * 4);
      // in row parts of 16 (49 in the last, 0 in the first, 17 in the second): each part gathers its own tokens
      const t = uploadTable(ctx!, table, V, H, format, 16 * H * (format === 'f32' ? 4 : 2));
      expect(t.parts.length).toBe(4);
      submit(d, embedding(ctx!, t, toks.length, upload(d, toks), out));
      const src = format === 'f16' ? f16ToF32(f32ToF16(table)) : table;
      const want = new Float32Array(toks.length * H);
      toks.forEach((t, m) => want.set(src.subarray(t * H, (t + 1) * H), m * H));
      expectClose(await read(out, toks.length * H), want, 0);
    }
  });

  // The k best allowed (logit, id), best first, ties to the lower id: what topk.wgsl must return exactly.
  function refTopK(x: Float32Array, offset: number, N: number, k: number, mask: Uint32Array | null): { ids: number[]; logits: number[] } {
    const ids: number[] = [];
    for (let i = 0; i < N; i++) if (!mask || (mask[i >>> 5]! >>> (i & 31)) & 1) ids.push(i);
    const v = (i: number) => x[offset + i]!;
    ids.sort((a, b) => (v(a) > v(b) ? -1 : v(a) < v(b) ? 1 : a - b));
    const top = ids.slice(0, k);
    return { ids: top, logits: top.map(v) };
  }

  function maskOf(N: number, allowed: (i: number) => boolean): Uint32Array {
    const m = new Uint32Array(Math.max(1, Math.ceil(N / 32)));
    for (let i = 0; i < N; i++) if (allowed(i)) m[i >>> 5]! |= 1 << (i & 31);
    return m;
  }

  /** Runs topK once on fresh buffers; the pairs land at outOffset 16 after a guard that must stay untouched. */
  async function deviceTopK(x: Float32Array, offset: number, N: number, k: number, mask: Uint32Array | null): Promise<{ ids: number[]; logits: number[] }> {
    const d = ctx!.device;
    const outOffset = 16;
    const xb = upload(d, x);
    const mb = mask ? upload(d, mask) : null;
    const scratch = storage(d, topKScratchBytes(N, k));
    const out = upload(d, new Uint32Array(4 + 2 * k).fill(0xdeadbeef));
    submit(d, topK(ctx!, { x: xb, offset, N, k, mask: mb, scratch, out, outOffset }));
    const raw = await readBack(d, out, 0, outOffset + 8 * k);
    expect(Array.from(new Uint32Array(raw, 0, 4)), 'bytes before outOffset').toEqual([0xdeadbeef, 0xdeadbeef, 0xdeadbeef, 0xdeadbeef]);
    const r = decodeTopK(new Uint8Array(raw, outOffset), k);
    for (const b of [xb, mb, scratch, out]) b?.destroy();
    return { ids: Array.from(r.ids), logits: Array.from(r.logits) };
  }

  /** Logits with ties: a few levels for small rows (most values tie), else random with the best values repeated. */
  function rowWithTies(n: number, N: number, offset: number): Float32Array {
    const x = randn(n);
    if (N < 64) {
      for (let i = 0; i < n; i++) x[i] = Math.round(x[i]! * 2) / 2;
    } else {
      // the best logit at several ids, and ties further down, which passes after the first must keep in id order
      const top = 2;
      for (let j = 0; j < 6; j++) x[offset + Math.floor(rand() * N)] = top;
      for (let j = 0; j < 40; j++) x[offset + Math.floor(rand() * N)] = Math.round(rand() * 8) / 8;
    }
    return x;
  }

  it('top-k on the device, with and without a token mask, ties to the lower id', async () => {
    for (const N of [1, 5, 1000, 1024, 1025, 5003, 70000]) {
      for (const k of [1, 7, 64, MAX_TOP_K]) {
        if (k > 7 && k > N) continue;
        const offset = 1 + Math.floor(rand() * 9);
        const x = rowWithTies(offset + N + 3, N, offset);
        const density = [0.5, 0.1, 0.01][Math.floor(rand() * 3)]!;
        for (const mask of [null, maskOf(N, () => rand() < density)]) {
          const label = `seed ${seed}, N ${N}, k ${k}, offset ${offset}, ${mask ? `mask ${density}` : 'no mask'}`;
          const got = await deviceTopK(x, offset, N, k, mask);
          expect(got, label).toEqual(refTopK(x, offset, N, k, mask));
        }
      }
    }
  });

  it('top-k masks: fewer allowed than k, exactly one, none; -Infinity logits stay candidates', async () => {
    const N = 5003;
    const offset = 3;
    const x = randn(offset + N);
    const cases: Array<[string, Uint32Array, number]> = [
      ['3 allowed, k 64', maskOf(N, (i) => i === 17 || i === 4000 || i === N - 1), 64],
      ['one allowed, k 7', maskOf(N, (i) => i === 2500), 7],
      ['one allowed, k 1', maskOf(N, (i) => i === 0), 1],
      ['none allowed', maskOf(N, () => false), 7],
    ];
    for (const [what, mask, k] of cases) expect(await deviceTopK(x, offset, N, k, mask), `seed ${seed}, ${what}`).toEqual(refTopK(x, offset, N, k, mask));
    expect((await deviceTopK(x, offset, N, 7, maskOf(N, () => false))).ids, 'none allowed: empty').toEqual([]);
    // allowed tokens whose logit is -Infinity rank after every finite one, by id, before the filler
    const y = Float32Array.from(x);
    const mask = maskOf(N, (i) => i % 500 === 7);
    for (let i = 1007; i < N; i += 1000) y[offset + i] = -Infinity;
    const got = await deviceTopK(y, offset, N, 64, mask);
    expect(got, `seed ${seed}`).toEqual(refTopK(y, offset, N, 64, mask));
    expect(got.ids.length).toBe(10);
    expect(got.logits.slice(-4)).toEqual([-Infinity, -Infinity, -Infinity, -Infinity]);
  });

  it('top-k with k = 1 picks what the host argmax picks on the masked row', async () => {
    for (const N of [1000, 5003]) {
      for (const density of [1, 0.3, 0.02, 0]) {
        const offset = 5;
        const x = randn(offset + N);
        for (let i = 0; i < N; i++) x[offset + i] = Math.round(x[offset + i]! * 4) / 4; // ties at the top
        const mask = maskOf(N, () => rand() < density);
        const masked = x.slice(offset, offset + N).map((v, i) => ((mask[i >>> 5]! >>> (i & 31)) & 1 ? v : -Infinity));
        const { ids } = await deviceTopK(x, offset, N, 1, mask);
        expect(ids.length ? ids[0] : -1, `seed ${seed}, N ${N}, density ${density}`).toBe(argmax(masked));
      }
    }
  });

  it('top-k dispatches recorded once, replayed with new mask contents', async () => {
    const d = ctx!.device;
    const [N, k] = [20000, 16];
    const x = randn(N);
    const uniforms = new UniformPool(d);
    const mb = upload(d, maskOf(N, () => true));
    const scratch = storage(d, topKScratchBytes(N, k));
    const out = storage(d, 8 * k);
    const plan = topK(ctx!, { x: upload(d, x), offset: 0, N, k, mask: mb, scratch, out, uniforms });
    expect(plan.every((p) => p.transient.length === 0)).toBe(true);
    for (const density of [1, 0.05, 0.001]) {
      const mask = maskOf(N, () => rand() < density);
      d.queue.writeBuffer(mb, 0, mask);
      submit(d, plan);
      const r = decodeTopK(await readBack(d, out, 0, 8 * k), k);
      expect({ ids: Array.from(r.ids), logits: Array.from(r.logits) }, `seed ${seed}, density ${density}`).toEqual(refTopK(x, 0, N, k, mask));
    }
  });

  it('top-k pass counts (the vocabulary of Qwen2: 151,936)', () => {
    expect(topKPasses(151936, 1)).toBe(2);
    expect(topKPasses(151936, 64)).toBe(3);
    expect(topKPasses(1024, 256)).toBe(1);
    expect(topKPasses(1025, 1)).toBe(2);
  });
});
