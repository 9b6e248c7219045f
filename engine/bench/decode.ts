/**
 * `mgd bench decode`: prefill and decode speed of a backend on a model, read against the machine's copy bandwidth
 * measured in the same run. Decoding one token streams every weight once, so decode is bandwidth-bound and
 * weightBytesPerToken x tok/s says how close to the memory system's limit the backend runs.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Backend, BackendName, WeightFormat } from '../backends/backend.js';
import { cacheRoot } from '../backends/onnx/build-cache.js';
import { forwardRowOf } from '../backends/logits-row.js';
import { loadOnnxBackend } from '../backends/onnx/onnx-backend.js';
import { deviceCopyGBps, gemvGBps, gemvSweep, idleCpuFraction } from '../backends/webgpu/microbench.js';
import { loadWebGpuBackend } from '../backends/webgpu/webgpu-backend.js';
import { matrixBytes } from '../../kernels/matmul.js';
import { onnxWeights } from '../backends/select.js';
import { openModelDir } from '../model/directory.js';
import { makeRandomModel, type RandomModelPreset } from '../model/make-random.js';
import { embeddedModelDir } from '../paths.js';
import { measureCopyGBps } from './bandwidth.js';

export interface BenchDecodeOptions {
  model?: string;
  like?: RandomModelPreset;
  backend?: BackendName | 'auto';
  weights?: WeightFormat;
  threads?: number;
  promptTokens: number;
  decodeTokens: number;
  log?: (line: string) => void;
  /** WebGPU: the GEMV microbenchmarks' matrix shape [N, K] (default 8192 x 2048) and weight bytes per timed submit
   * (default 256 MiB); tests on llvmpipe make both small. */
  gemv?: { N: number; K: number; minBytes?: number };
}

export async function benchDecode(o: BenchDecodeOptions) {
  const log = o.log ?? (() => {});
  const dir = o.like ? randomModelDir(o.like, log) : (o.model ?? embeddedModelDir());
  const model = openModelDir(dir);
  const weights = o.weights ?? 'f32';
  log(`loading ${dir} (${weights}) ...`);
  const t0 = performance.now();
  // WebGPU on request (any adapter, llvmpipe included); otherwise ONNX Runtime on the CPU
  const gpu = o.backend === 'webgpu' ? await loadWebGpuBackend(model, { weights }) : null;
  const backend = gpu ?? (await loadOnnxBackend(model, { weights: onnxWeights(weights), threads: o.threads }));
  const maxPositions = gpu ? gpu.maxPositions : (backend as Awaited<ReturnType<typeof loadOnnxBackend>>).maxPositions;
  const loadMs = performance.now() - t0;
  try {
    const V = model.config.vocabSize;
    const maxPrompt = Math.min(o.promptTokens, maxPositions - o.decodeTokens - 1);
    // Deterministic pseudo-random prompt: ids spread over the vocabulary, as real text is.
    const prompt = Array.from({ length: maxPrompt }, (_, i) => (i * 7919 + 13) % Math.min(V, 50000));

    const { prefillMs, steps } = await measurePrefillAndDecode(backend, prompt, o.decodeTokens);
    steps.sort((a, b) => a - b);
    const stepMs = steps[Math.floor(steps.length / 2)]!;
    const decodeTokPerS = 1000 / stepMs;
    log('measuring copy bandwidth ...');
    const copyGBps = measureCopyGBps();
    const bytes = backend.info.weightBytesPerToken;
    const achievedGBps = bytes > 0 ? (bytes * decodeTokPerS) / 1e9 : null;
    // On WebGPU the roofline is the device's own copy bandwidth. The GEMV figures are the decode kernel alone on an
    // [N][K] matrix (8192x2048: the shape the llvmpipe-vs-ORT figure was taken on), in every weight format
    // (and q4 with f16 scales, the backend's default for q4) with the default workgroup cut, then the model's
    // own products in the run's format, and swept over cuts for q4 and f16 (to tune matmul.ts's gemvShape).
    let device: Record<string, unknown> = {};
    if (gpu) {
      log('measuring device copy bandwidth and the GEMVs ...');
      const deviceCopy = await deviceCopyGBps(gpu.ctx);
      const { N, K, minBytes } = o.gemv ?? { N: 8192, K: 2048 };
      const gemv: Record<string, unknown> = {};
      for (const [name, f, scales] of [['f32', 'f32'], ['f16', 'f16'], ['q8', 'q8'], ['q4', 'q4'], ['q4-f16-scales', 'q4', 'f16']] as const) {
        const r = await gemvGBps(gpu.ctx, N, K, f, { minBytes, scales });
        gemv[name] = { GBps: round(r.GBps), fractionOfDeviceCopy: round(r.GBps / deviceCopy), ...r.shape };
      }
      const sweep: Record<string, unknown> = {};
      for (const f of ['q4', 'f16'] as const) sweep[f] = await gemvSweep(gpu.ctx, N, K, f, { minBytes });
      // the model's own products in this run's format, default cut: which of them stay far from the roofline
      const c = model.config;
      const products: Array<[string, number, number]> = [
        ['qkv', (c.numHeads + 2 * c.numKvHeads) * c.headDim, c.hiddenSize],
        ['o', c.hiddenSize, c.numHeads * c.headDim],
        ['gateUp', 2 * c.intermediateSize, c.hiddenSize],
        ['down', c.hiddenSize, c.intermediateSize],
        ['lmHead', c.vocabSize, c.hiddenSize],
      ];
      const gemvModel: unknown[] = [];
      const scales = gpu.scales ?? undefined;
      const binding = gpu.ctx.device.limits.maxStorageBufferBindingSize;
      for (const [name, pn, pk] of products) {
        // a product over one binding runs in row parts (backend); its GEMV is measured on the rows one part holds
        const rows = Math.min(pn, Math.floor(binding / matrixBytes(backend.info.weights, 1, pk, scales)));
        const r = await gemvGBps(gpu.ctx, rows, pk, backend.info.weights, { minBytes, scales });
        gemvModel.push({ name, N: pn, K: pk, ...(rows < pn ? { measuredRows: rows } : {}), GBps: round(r.GBps), ...r.shape });
      }
      const own = gemv[backend.info.weights] as { GBps: number };
      log('measuring idle CPU with the device held ...');
      const idleCpu = await idleCpuFraction();
      device = {
        dispatchesPerToken: gpu.lastDispatches,
        // host work of the last decode step (encoding, readback unpacking), the submit and the wait excluded
        hostMsPerToken: round(gpu.lastHostMs),
        // besides the embedding, the lm_head and the greedy pick's top-k passes (when it runs on the device)
        dispatchesPerLayer: round((gpu.lastDispatches - 2 - gpu.lastPickDispatches) / model.config.numLayers),
        picksOnDevice: gpu.devicePicks,
        scales: gpu.scales,
        // CPU (fraction of one core) of this process holding the device, idle for 2 s (Dawn's node binding can spin)
        idleCpuFraction: Math.round(idleCpu * 1000) / 1000,
        features: gpu.ctx.features,
        deviceCopyGBps: round(deviceCopy),
        fractionOfDeviceCopy: achievedGBps === null ? null : round(achievedGBps / deviceCopy),
        gemvShape: `${N}x${K}`,
        // the GEMV in this run's weight format, then every format, then the sweep
        gemvGBps: own.GBps,
        gemvFractionOfDeviceCopy: round(own.GBps / deviceCopy),
        gemv,
        gemvSweep: sweep,
        gemvModel,
      };
    }
    return {
      bench: 'decode',
      model: model.dir,
      like: o.like ?? null,
      architecture: model.config.architecture,
      backend: backend.info.name,
      device: backend.info.device,
      weights: backend.info.weights,
      promptTokens: prompt.length,
      decodeTokens: o.decodeTokens,
      loadMs: round(loadMs),
      prefillMs: round(prefillMs),
      prefillTokPerS: round((prompt.length * 1000) / prefillMs),
      decodeMsP50: round(stepMs),
      decodeMsP90: round(steps[Math.floor(steps.length * 0.9)]!),
      decodeTokPerS: round(decodeTokPerS),
      weightBytesPerToken: bytes,
      achievedGBps: achievedGBps === null ? null : round(achievedGBps),
      copyGBps: round(copyGBps),
      fractionOfCopy: achievedGBps === null ? null : round(achievedGBps / copyGBps),
      ...device,
    };
  } finally {
    await backend.dispose();
  }
}

/** A random-weight model of a preset, made once under the cache directory (seed 0) and reused by every benchmark. */
export function randomModelDir(like: RandomModelPreset, log: (line: string) => void = () => {}): string {
  const dir = path.join(cacheRoot(), 'models', `${like}-seed0`);
  if (!fs.existsSync(path.join(dir, 'config.json'))) {
    log(`making a random ${like} model in ${dir} ...`);
    makeRandomModel({ like, out: dir, seed: 0 });
  }
  return dir;
}

/**
 * Prefill: best of three fresh caches (the first run also warms up kernels and the allocator). Decode: greedy steps
 * after the prompt as the decode loop runs them (the forward and the pick: on the device where the backend keeps its
 * logits row there, else over the host row), each step's time returned (callers take the median:
 * robust to a noisy neighbour).
 */
export async function measurePrefillAndDecode(backend: Backend, prompt: number[], decodeTokens: number): Promise<{ prefillMs: number; steps: number[] }> {
  let prefillMs = Infinity;
  for (let r = 0; r < 3; r++) {
    const c = backend.createCache();
    const t = performance.now();
    await backend.forward(c, prompt);
    prefillMs = Math.min(prefillMs, performance.now() - t);
    c.free();
  }
  const cache = backend.createCache();
  const V = backend.config.vocabSize;
  const greedy = async (tokens: readonly number[]): Promise<number> => {
    const row = await forwardRowOf(backend, cache, tokens, { top: { k: 1, limit: V } });
    return (await row.top(1, null, V)).ids[0]!;
  };
  let next = await greedy(prompt);
  const steps: number[] = [];
  for (let s = 0; s < decodeTokens; s++) {
    const t = performance.now();
    next = await greedy([next]);
    steps.push(performance.now() - t);
  }
  cache.free();
  return { prefillMs, steps };
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}
