/**
 * The WebGPU backend against the ONNX Runtime backend on the fixture models (same weights): logits of a prefill and
 * of decode steps, chunked prefill, fork/truncate, KV export/import across backends, device loss (the engine's
 * FallbackBackend moves to ONNX Runtime and keeps answering), and identical greedy completions through Engine.
 * Tolerance for f32 as in onnx-backend.test.ts: 1e-4 · (1 + max |logit|); summation orders differ, bugs move > 1e-2.
 * Quantized weights: both backends decode the same MatMulNBits blocks, but ORT's accuracy_level 4 also quantizes
 * the activations to int8, so q8/q4 agree to a few percent only. f16 weights (WebGPU only) are checked against the
 * float64 reference run on the same weights rounded to f16 (matrices and the embedding; norms and biases stay f32).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadOnnxBackend, type OnnxBackend } from '../engine/backends/onnx/onnx-backend.js';
import { topOf } from '../engine/backends/logits-row.js';
import { FallbackBackend } from '../engine/backends/webgpu/fallback-backend.js';
import { loadWebGpuBackend, type WebGpuBackend } from '../engine/backends/webgpu/webgpu-backend.js';
import { Engine } from '../engine/engine.js';
import { openModelDir, type ModelDir } from '../engine/model/directory.js';
import { ensureFixtureModel } from '../engine/model/fixtures.js';
import { f16ToF32, f32ToF16 } from '../engine/model/fp16.js';
import { ReferenceModel } from '../engine/model/llama.js';
import type { WeightSource } from '../engine/model/tensor-types.js';
import { openWeights } from '../engine/model/weights.js';

/** The checkpoint as the f16 backend holds it: every matrix rounded to f16, vectors (norms, biases) as they are. */
function f16Rounded(w: WeightSource): WeightSource {
  return {
    has: (n) => w.has(n),
    info: (n) => w.info(n),
    names: () => w.names(),
    readRaw: (n) => w.readRaw(n),
    close: () => w.close(),
    readF32: (n) => (w.info(n).shape.length === 2 ? f16ToF32(f32ToF16(w.readF32(n))) : w.readF32(n)),
  };
}

function expectClose(actual: Float32Array, expected: Float32Array, rel = 1e-4): void {
  expect(actual.length).toBe(expected.length);
  let worst = 0;
  let scale = 0;
  for (let i = 0; i < actual.length; i++) {
    worst = Math.max(worst, Number.isNaN(actual[i]) ? Infinity : Math.abs(actual[i]! - expected[i]!));
    scale = Math.max(scale, Math.abs(expected[i]!));
  }
  expect(worst).toBeLessThanOrEqual(rel * (1 + scale));
}

const prompt = Array.from({ length: 23 }, (_, i) => (i * 37 + 5) % 200);

for (const fixture of ['tiny', 'tiny-llama'] as const)
  describe(`webgpu backend on ${fixture}`, () => {
    let model: ModelDir;
    let gpu: WebGpuBackend;
    let ort: OnnxBackend;
    beforeAll(async () => {
      model = openModelDir(ensureFixtureModel(fixture));
      gpu = await loadWebGpuBackend(model, { chunkSize: 16 });
      ort = await loadOnnxBackend(model, { threads: 2 });
    });
    afterAll(async () => {
      await gpu?.dispose();
      await ort?.dispose();
    });

    it('prefill (chunked) and decode logits match ONNX Runtime', async () => {
      const g = gpu.createCache();
      const o = ort.createCache();
      // 23 tokens in chunks of 16: the last 10 rows' logits span both chunks
      expectClose(await gpu.forward(g, prompt, { logitsFor: 10 }), await ort.forward(o, prompt, { logitsFor: 10 }));
      for (const t of [3, 77, 150]) expectClose(await gpu.forward(g, [t]), await ort.forward(o, [t]));
      expect(g.tokens).toEqual(o.tokens);
      g.free();
      o.free();
    });

    it('fork and truncate; exported KV continues on ONNX Runtime and back', async () => {
      const g = gpu.createCache();
      await gpu.forward(g, prompt.slice(0, 12));
      const f = g.fork();
      await gpu.forward(g, [9, 9, 9]); // the fork must not see these
      g.truncate(10);
      const o = ort.createCache();
      await ort.forward(o, prompt.slice(0, 10));
      expectClose(await gpu.forward(g, [42]), await ort.forward(o, [42]));
      expect(gpu.exportKv(f, 0, 12).length).toBe(12 * 2 * model.config.numLayers * model.config.numKvHeads * model.config.headDim);
      // webgpu -> onnx
      const moved = ort.importKv(f.tokens, [gpu.exportKv(f, 0, 5), gpu.exportKv(f, 5, 12)]);
      const ref = ort.createCache();
      await ort.forward(ref, prompt.slice(0, 12));
      expectClose(await ort.forward(moved, [7]), await ort.forward(ref, [7]));
      // onnx -> webgpu (and past the 64-position initial capacity, which makes the cache grow)
      const back = gpu.importKv(ref.tokens, [ort.exportKv(ref, 0, ref.length)]);
      const long = Array.from({ length: 70 }, (_, i) => (i * 13) % 200);
      expectClose(await gpu.forward(back, long), await ort.forward(ref, long));
      for (const c of [g, f, o, moved, ref, back]) c.free();
    });

    it('recorded plans stay right across caches, forks, imports, growth and chunk shapes', async () => {
      // the backend records a chunk's dispatches once per (cache, M, rows) and reuses them: each step below would
      // read a stale cache buffer, position or shape if a plan outlived what it was recorded for
      const g = gpu.createCache();
      const o = ort.createCache();
      expectClose(await gpu.forward(g, prompt), await ort.forward(o, prompt));
      for (const t of [3, 77, 150, 9]) expectClose(await gpu.forward(g, [t]), await ort.forward(o, [t]));
      // a fork has its own buffers: decoding it must not touch g's, and g's plan must not write the fork's
      const gf = g.fork();
      const of = o.fork();
      for (const t of [11, 12]) expectClose(await gpu.forward(gf, [t]), await ort.forward(of, [t]));
      expectClose(await gpu.forward(g, [13]), await ort.forward(o, [13]));
      // truncate: same buffers, earlier positions
      g.truncate(20);
      o.truncate(20);
      expectClose(await gpu.forward(g, [14]), await ort.forward(o, [14]));
      // an imported cache, decoded with the shape g already recorded
      const oi = of.fork();
      const imp = gpu.importKv(oi.tokens, [ort.exportKv(oi, 0, oi.length)]);
      expectClose(await gpu.forward(imp, [15]), await ort.forward(oi, [15]));
      // a prefill chunk of another M with several rows of logits, then growth past the 64-position capacity (new
      // device buffers) in the middle of a chunked prefill, then decode again with the shape recorded before growth
      expectClose(await gpu.forward(g, [5, 6, 7, 8, 9], { logitsFor: 5 }), await ort.forward(o, [5, 6, 7, 8, 9], { logitsFor: 5 }));
      const cap = g.capacity;
      const more = Array.from({ length: 70 - g.length }, (_, i) => (i * 17 + 3) % 200);
      expectClose(await gpu.forward(g, more, { logitsFor: 2 }), await ort.forward(o, more, { logitsFor: 2 }));
      expect(g.capacity).toBeGreaterThan(cap);
      for (const t of [21, 22]) expectClose(await gpu.forward(g, [t]), await ort.forward(o, [t]));
      expectClose(await gpu.forward(imp, [16]), await ort.forward(oi, [16]));
      expectClose(await gpu.forward(gf, [17, 18, 19], { logitsFor: 3 }), await ort.forward(of, [17, 18, 19], { logitsFor: 3 }));
      expect(g.tokens).toEqual(o.tokens);
      expect(gf.tokens).toEqual(of.tokens);
      for (const c of [g, o, gf, of, oi, imp]) c.free();
    });

    it('f16 weights match the float64 reference on f16-rounded weights (prefill rows, decode steps)', async () => {
      const g16 = await loadWebGpuBackend(model, { weights: 'f16', chunkSize: 16 });
      const w = openWeights(model.dir);
      try {
        expect(g16.info.weights).toBe('f16');
        const ref = new ReferenceModel(model.config, f16Rounded(w));
        const c = g16.createCache();
        const V = model.config.vocabSize;
        const want = ref.forwardAll(prompt).slice(-3);
        const got = await g16.forward(c, prompt, { logitsFor: 3 });
        for (let r = 0; r < 3; r++) expectClose(got.subarray(r * V, (r + 1) * V), Float32Array.from(want[r]!));
        for (const t of [3, 77, 150]) expectClose(await g16.forward(c, [t]), Float32Array.from(ref.forward([t])));
        c.free();
      } finally {
        w.close();
        await g16.dispose();
      }
    });

    it('matrices and the embedding table over the binding limit run in row parts, with the same logits', async () => {
      const c = model.config;
      // a limit of a quarter of the embedding table in f32: lm_head and table in 4+ parts, the layers' matrices too
      // when they are larger than that
      const maxBindingBytes = Math.ceil((c.vocabSize * c.hiddenSize * 4) / 4);
      for (const weights of ['f32', 'q4'] as const) {
        const whole = weights === 'f32' ? gpu : await loadWebGpuBackend(model, { weights });
        const split = await loadWebGpuBackend(model, { weights, maxBindingBytes, chunkSize: 16 });
        try {
          expect(split.info.weightBytesPerToken).toBe(whole.info.weightBytesPerToken);
          const a = split.createCache();
          const b = whole.createCache();
          expectClose(await split.forward(a, prompt, { logitsFor: 3 }), await whole.forward(b, prompt, { logitsFor: 3 }), 1e-5);
          expect(split.lastDispatches).toBeGreaterThan(whole.lastDispatches); // the parts' extra dispatches
          expectClose(await split.forward(a, [9]), await whole.forward(b, [9]), 1e-5);
        } finally {
          await split.dispose();
          if (whole !== gpu) await whole.dispose();
        }
      }
    });

    it('q8 and q4 weights agree with ONNX Runtime MatMulNBits; f16 scales with f32 ones', async () => {
      for (const weights of ['q8', 'q4'] as const) {
        const gq = await loadWebGpuBackend(model, { weights, scales: 'f32' });
        const g16 = await loadWebGpuBackend(model, { weights });
        const oq = await loadOnnxBackend(model, { weights, threads: 2 });
        try {
          expect(gq.info.weightBytesPerToken).toBe(oq.info.weightBytesPerToken);
          const logits = await gq.forward(gq.createCache(), prompt);
          expectClose(logits, await oq.forward(oq.createCache(), prompt), 0.05);
          // f16 scales (the default): two bytes less per block of 32, each scale within 2^-11 of the f32 one
          expect(g16.scales).toBe('f16');
          const c = model.config;
          const blocks = (N: number, K: number) => N * Math.ceil(K / 32); // rows are whole blocks, padded past K
          const layer = blocks((c.numHeads + 2 * c.numKvHeads) * c.headDim, c.hiddenSize) + blocks(c.hiddenSize, c.numHeads * c.headDim) + blocks(2 * c.intermediateSize, c.hiddenSize) + blocks(c.hiddenSize, c.intermediateSize);
          const lmHead = blocks(c.vocabSize, c.hiddenSize); // quantized, tied or not: its own matrix
          expect(gq.info.weightBytesPerToken - g16.info.weightBytesPerToken).toBe((c.numLayers * layer + lmHead) * 2);
          expectClose(await g16.forward(g16.createCache(), prompt), logits, 5e-3);
        } finally {
          await gq.dispose();
          await g16.dispose();
          await oq.dispose();
        }
      }
    });
  });

describe('logits rows left on the device (forwardRow: top-k under a token mask there)', () => {
  it('answers top-k exactly as the host does over the same row, with masks, limits and ties', async () => {
    const model = openModelDir(ensureFixtureModel('tiny'));
    const gpu = await loadWebGpuBackend(model, { chunkSize: 16, devicePicks: true });
    const ort = await loadOnnxBackend(model, { threads: 2 });
    try {
      const V = gpu.config.vocabSize;
      const c = gpu.createCache();
      const o = ort.createCache();
      const row = await gpu.forwardRow(c, prompt, { top: { k: 4, limit: V } });
      expect(c.length).toBe(prompt.length);
      const whole = await row.read();
      expectClose(whole, await ort.forward(o, prompt));
      // a sparse mask (every 7th id and a few low ones), one allowing a single id, one allowing none
      const sparse = new Uint32Array(Math.ceil(V / 32));
      for (let i = 0; i < V; i += 7) sparse[i >>> 5]! |= 1 << (i & 31);
      const single = new Uint32Array(Math.ceil(V / 32));
      single[3] = 1 << 5; // id 101
      for (const [k, mask, limit] of [[1, null, V], [4, null, V], [3, null, V], [40, null, V - 50], [1, sparse, V], [64, sparse, V], [5, single, V], [2, new Uint32Array(1), V], [1, null, 17]] as const) {
        const got = await row.top(k, mask, limit);
        const want = topOf(whole, k, mask, limit);
        expect(Array.from(got.ids), `k ${k} limit ${limit}`).toEqual(Array.from(want.ids));
        expect(Array.from(got.logits)).toEqual(Array.from(want.logits));
      }
      // decode steps: the first question (asked with the forward) and the row agree with ONNX Runtime's argmax
      for (const t of [3, 77]) {
        const r = await gpu.forwardRow(c, [t], { top: { k: 1, limit: V } });
        const ref = await ort.forward(o, [t]);
        expect((await r.top(1, null, V)).ids[0]).toBe(topOf(ref, 1, null, V).ids[0]);
        await expect(row.top(1, null, V)).rejects.toThrow(/after the next forward/);
      }
      expect(c.tokens).toEqual(o.tokens);
      // a step that picks on the device reads back k pairs: its dispatches end with the top-k passes
      expect(gpu.lastDispatches).toBeGreaterThan(7 * gpu.config.numLayers + 1);
    } finally {
      await gpu.dispose();
      await ort.dispose();
    }
  });

  it('greedy completions with monitors are the same on device picks as on onnx', async () => {
    const dir = ensureFixtureModel('tiny');
    const req = { prefix: "const greeting = 'hello';\nconst n = greeting.", suffix: ';\n', filePath: 'a.ts', maxTokens: 6, monitors: true, stop: 'none' as const };
    const out: Array<{ text: string; masked: number }> = [];
    process.env.MGD_WEBGPU_PICKS = 'device';
    try {
      for (const backend of ['onnx', 'webgpu'] as const) {
        const engine = await Engine.load({ model: dir, backend, threads: 2 });
        try {
          const r = await engine.complete(req);
          out.push({ text: r.text, masked: r.monitor.maskedSteps });
        } finally {
          await engine.dispose();
        }
      }
    } finally {
      delete process.env.MGD_WEBGPU_PICKS;
    }
    expect(out[0]!.masked).toBeGreaterThan(0); // the dot site was monitored
    expect(out[1]).toEqual(out[0]);
  });
});

describe('webgpu device loss', () => {
  it('moves to ONNX Runtime mid-sequence and keeps answering with the same logits', async () => {
    const model = openModelDir(ensureFixtureModel('tiny'));
    const warnings: string[] = [];
    const ort = await loadOnnxBackend(model, { threads: 2 });
    const gpu = await loadWebGpuBackend(model);
    const fb = new FallbackBackend(gpu, () => loadOnnxBackend(model, { threads: 2 }), (m) => warnings.push(m));
    try {
      const c = fb.createCache();
      const o = ort.createCache();
      expectClose(await fb.forward(c, prompt), await ort.forward(o, prompt));
      gpu.ctx.device.destroy(); // what a driver reset looks like to us
      await gpu.ctx.lost;
      expectClose(await fb.forward(c, [5, 6]), await ort.forward(o, [5, 6]));
      expect(fb.info.name).toBe('onnx');
      expect(warnings.join('\n')).toMatch(/lost|destroyed/i);
      const d = fb.createCache();
      await fb.forward(d, [1, 2, 3]);
      expect(d.length).toBe(3);
    } finally {
      await fb.dispose();
      await ort.dispose();
    }
  });

  it('a logits row left on the device when it goes is answered again on the CPU', async () => {
    const model = openModelDir(ensureFixtureModel('tiny'));
    const ort = await loadOnnxBackend(model, { threads: 2 });
    const gpu = await loadWebGpuBackend(model, { devicePicks: true });
    const fb = new FallbackBackend(gpu, () => loadOnnxBackend(model, { threads: 2 }), () => undefined);
    try {
      const V = gpu.config.vocabSize;
      const c = fb.createCache();
      const row = await fb.forwardRow(c, prompt, { top: { k: 1, limit: V } });
      gpu.ctx.device.destroy();
      await gpu.ctx.lost;
      const mask = new Uint32Array(Math.ceil(V / 32)).fill(0xaaaaaaaa); // odd ids only
      const ref = await ort.forward(ort.createCache(), prompt);
      expect(Array.from((await row.top(3, mask, V)).ids)).toEqual(Array.from(topOf(ref, 3, mask, V).ids));
      expect(c.length).toBe(prompt.length);
      expect(fb.info.name).toBe('onnx');
    } finally {
      await fb.dispose();
      await ort.dispose();
    }
  });
});

describe('Engine with --backend webgpu', () => {
  it('gives the same greedy completion as onnx', async () => {
    const dir = ensureFixtureModel('tiny');
    const req = { prefix: 'function add(a, b) {\n  return ', suffix: '\n}\n', filePath: 'a.js', maxTokens: 12, monitors: false, stop: 'none' as const };
    const texts: string[] = [];
    for (const backend of ['onnx', 'webgpu'] as const) {
      const engine = await Engine.load({ model: dir, backend, threads: 2 });
      try {
        expect(engine.backend.info.name).toBe(backend);
        const r = await engine.complete(req);
        texts.push(r.text);
        expect(r.tokens).toBeGreaterThan(0);
      } finally {
        await engine.dispose();
      }
    }
    expect(texts[1]).toBe(texts[0]);
  });
});

describe('mgd bench decode --backend webgpu', () => {
  it('reports speed, dispatches per layer (<= 8) and the device roofline', async () => {
    const { benchDecode } = await import('../engine/bench/decode.js');
    const r = await benchDecode({ like: 'tiny', backend: 'webgpu', promptTokens: 8, decodeTokens: 3, gemv: { N: 64, K: 64, minBytes: 1 << 12 } });
    expect(r.backend).toBe('webgpu');
    expect(r.decodeTokPerS).toBeGreaterThan(0);
    expect(r.dispatchesPerLayer).toBeLessThanOrEqual(8);
    expect(r.deviceCopyGBps).toBeGreaterThan(0);
    // the GEMVs ran in every format (a 64x64 product is too small for a figure: it may round to 0 GB/s)
    expect(Number.isFinite(r.gemvGBps)).toBe(true);
    const gemv = r.gemv as Record<string, { GBps: number }>;
    for (const f of ['f32', 'f16', 'q8', 'q4', 'q4-f16-scales']) expect(gemv[f]!.GBps).toBeGreaterThanOrEqual(0);
    const sweep = r.gemvSweep as Record<string, Array<{ GBps: number }>>;
    // and every cut (the kernels' results are the kernel tests' business)
    for (const f of ['q4', 'f16']) expect(sweep[f]!.length).toBeGreaterThan(0);
    expect(sweep.f16!.every((c) => Number.isFinite(c.GBps) && c.GBps >= 0)).toBe(true);
    expect((r.gemvModel as Array<{ name: string }>).map((g) => g.name)).toEqual(['qkv', 'o', 'gateUp', 'down', 'lmHead']);
    expect(r.idleCpuFraction).toBeGreaterThanOrEqual(0);
  });

  it('f16 weights: the weight bytes per token are two per parameter (rows whole blocks of 32)', async () => {
    const { benchDecode } = await import('../engine/bench/decode.js');
    const r = await benchDecode({ like: 'tiny', backend: 'webgpu', weights: 'f16', promptTokens: 4, decodeTokens: 2, gemv: { N: 64, K: 64, minBytes: 1 << 12 } });
    expect(r.weights).toBe('f16');
    const c = openModelDir(ensureFixtureModel('tiny')).config;
    const { hiddenSize: H, intermediateSize: I, numHeads: nH, numKvHeads: kvH, headDim: hd, vocabSize: V, numLayers } = c;
    const pad = (k: number) => Math.ceil(k / 32) * 32;
    const perLayer = (nH + 2 * kvH) * hd * pad(H) + H * pad(nH * hd) + 2 * I * pad(H) + H * pad(I);
    expect(r.weightBytesPerToken).toBe(2 * (numLayers * perLayer + V * pad(H)));
  });

  it('the onnx backend refuses f16 weights with a one-line BadInputError', async () => {
    const { benchDecode } = await import('../engine/bench/decode.js');
    const { BadInputError } = await import('../engine/errors.js');
    const err = await benchDecode({ like: 'tiny', backend: 'onnx', weights: 'f16', promptTokens: 4, decodeTokens: 2 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BadInputError);
    expect((err as Error).message).toMatch(/^f16 weights run on the webgpu backend only[^\n]*$/);
  });
});
