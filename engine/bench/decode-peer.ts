/**
 * `mgd bench decode --peer llamacpp`: our ONNX Runtime backend and llama.cpp (node-llama-cpp's prebuilt CPU build)
 * on the same weights, in one run: the model exported to GGUF by engine/model/gguf.ts, f32 against f32 and our q8
 * against llama.cpp's q8_0 (both 8-bit codes in blocks of 32 with one scale per block).
 *
 * Both decode greedily from the same prompt ids with the same thread count; the figure for each is the median time
 * of one decode step, taken as the time between consecutive tokens (llama.cpp: between tokens its generator yields,
 * sampling included; ours: one forward of one token plus the argmax). Prefill is the best of three fresh sequences.
 * Each engine runs with its own defaults otherwise (llama.cpp: f16 KV cache, flash attention auto; ours: f32 KV),
 * which the JSON records. Only one engine holds the weights at a time.
 *
 * The machines here are shared: a noisy minute lands on whichever engine runs then. With `rounds` > 1 the two
 * alternate (ours, llama.cpp, ours, ...), each round loading afresh; the medians are over every round's steps and
 * each round's own ratio is reported, so drift shows instead of deciding the figure.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { WeightFormat } from '../backends/backend.js';
import { loadOnnxBackend } from '../backends/onnx/onnx-backend.js';
import { BadInputError } from '../errors.js';
import { openModelDir, type ModelDir } from '../model/directory.js';
import { exportGguf, type GgufType } from '../model/gguf.js';
import type { RandomModelPreset } from '../model/make-random.js';
import { cacheRoot, embeddedModelDir } from '../paths.js';
import { getCpuLlama, loadNodeLlamaCpp, NODE_LLAMA_CPP_VERSION } from '../peers/node-llama-cpp.js';
import { measureCopyGBps } from './bandwidth.js';
import { measurePrefillAndDecode, randomModelDir } from './decode.js';

export interface BenchDecodePeerOptions {
  model?: string;
  like?: RandomModelPreset;
  /** Weight formats to compare; default both f32 and q8. */
  weights?: Array<Extract<WeightFormat, 'f32' | 'q8'>>;
  threads?: number;
  promptTokens: number;
  decodeTokens: number;
  /** Alternating rounds of both engines (default 1). */
  rounds?: number;
  log?: (line: string) => void;
}

/** Our weight format -> the GGUF type llama.cpp runs for it. */
const GGUF_FOR: Record<'f32' | 'q8', GgufType> = { f32: 'f32', q8: 'q8_0' };

interface Speed {
  loadMs: number;
  prefillMs: number;
  prefillTokPerS: number;
  decodeMsP50: number;
  decodeMsP90: number;
  decodeTokPerS: number;
  /** Steps actually timed (llama.cpp's generator stops early at an end-of-generation token). */
  decodeSteps: number;
}

export async function benchDecodePeer(o: BenchDecodePeerOptions) {
  const log = o.log ?? (() => {});
  const peer = await loadNodeLlamaCpp();
  if (!peer.ok) throw new BadInputError(`llama.cpp peer unavailable: ${peer.reason}`);
  const model = openModelDir(resolveModel(o, log));
  const threads = o.threads ?? os.availableParallelism();
  const V = model.config.vocabSize;
  const promptLen = Math.min(o.promptTokens, model.config.maxPositionEmbeddings - o.decodeTokens - 1);
  // the same deterministic prompt as `bench decode`: ids spread over the vocabulary, as real text is
  const prompt = Array.from({ length: promptLen }, (_, i) => (i * 7919 + 13) % Math.min(V, 50000));
  const llama = await getCpuLlama(peer.module);

  const runs = [];
  const rounds = o.rounds ?? 1;
  for (const weights of o.weights ?? (['f32', 'q8'] as const)) {
    const file = ensureGguf(model, GGUF_FOR[weights], log);
    const all = { ours: [] as Raw[], theirs: [] as Raw[] };
    const roundRatios: number[] = [];
    for (let r = 0; r < rounds; r++) {
      log(`ours: loading ${model.dir} (${weights}), round ${r + 1}/${rounds} ...`);
      const ours = await measureOurs(model, weights, threads, prompt, o.decodeTokens);
      log(`llama.cpp: loading ${file}, round ${r + 1}/${rounds} ...`);
      const theirs = await measureLlamaCpp(llama, file, threads, prompt, o.decodeTokens);
      all.ours.push(ours);
      all.theirs.push(theirs);
      roundRatios.push(round(median(theirs.steps) / median(ours.steps)));
    }
    const ours = speed(all.ours, prompt.length);
    const theirs = speed(all.theirs, prompt.length);
    runs.push({
      weights,
      ggufType: GGUF_FOR[weights],
      ours,
      llamacpp: theirs,
      decodeRatio: round(ours.decodeTokPerS / theirs.decodeTokPerS),
      prefillRatio: round(ours.prefillTokPerS / theirs.prefillTokPerS),
      ...(rounds > 1 ? { decodeRatioPerRound: roundRatios } : {}),
    });
  }
  log('measuring copy bandwidth ...');
  return {
    bench: 'decode',
    peer: 'llamacpp',
    peerVersion: `node-llama-cpp@${NODE_LLAMA_CPP_VERSION}`,
    model: model.dir,
    like: o.like ?? null,
    architecture: model.config.architecture,
    threads,
    promptTokens: prompt.length,
    decodeTokens: o.decodeTokens,
    rounds,
    kvCache: { ours: 'f32', llamacpp: 'f16 (default), flash attention auto' },
    runs,
    copyGBps: round(measureCopyGBps()),
    loadAverage: os.loadavg().map(round),
  };
}

function resolveModel(o: BenchDecodePeerOptions, log: (l: string) => void): string {
  return o.like ? randomModelDir(o.like, log) : (o.model ?? embeddedModelDir());
}

/** The model's GGUF of a type, exported once and keyed by the model's fingerprint. */
function ensureGguf(model: ModelDir, type: GgufType, log: (l: string) => void): string {
  const file = path.join(cacheRoot(), 'gguf', `${path.basename(model.dir)}-${model.fingerprint().slice(0, 16)}-${type}.gguf`);
  if (!fs.existsSync(file)) {
    log(`exporting ${type} GGUF to ${file} ...`);
    exportGguf(model.dir, file, type);
  }
  return file;
}

/** One round of one engine: load time, best prefill, each decode step's time. */
interface Raw {
  loadMs: number;
  prefillMs: number;
  steps: number[];
}

async function measureOurs(model: ModelDir, weights: WeightFormat, threads: number, prompt: number[], decodeTokens: number): Promise<Raw> {
  const t0 = performance.now();
  const backend = await loadOnnxBackend(model, { weights, threads });
  const loadMs = performance.now() - t0;
  try {
    // the step includes the argmax, as llama.cpp's includes its sampling
    const { prefillMs, steps } = await measurePrefillAndDecode(backend, prompt, decodeTokens);
    return { loadMs, prefillMs, steps };
  } finally {
    await backend.dispose();
  }
}

async function measureLlamaCpp(llama: Awaited<ReturnType<typeof getCpuLlama>>, file: string, threads: number, prompt: number[], decodeTokens: number): Promise<Raw> {
  const t0 = performance.now();
  const model = await llama.loadModel({ modelPath: file });
  const loadMs = performance.now() - t0;
  const ctx = await model.createContext({ contextSize: prompt.length + decodeTokens + 16, threads, batchSize: Math.max(prompt.length, 1) });
  try {
    const seq = ctx.getSequence();
    let prefillMs = Infinity;
    for (let r = 0; r < 3; r++) {
      await seq.clearHistory();
      const t = performance.now();
      await seq.evaluateWithoutGeneratingNewTokens(prompt);
      prefillMs = Math.min(prefillMs, performance.now() - t);
    }
    await seq.clearHistory();
    const steps: number[] = [];
    let last = 0;
    let first = true;
    for await (const _ of seq.evaluate(prompt, { temperature: 0 })) {
      const now = performance.now();
      if (!first) steps.push(now - last);
      first = false;
      last = now;
      if (steps.length >= decodeTokens) break;
    }
    if (steps.length === 0) throw new Error('llama.cpp ended generation at once (an end-of-generation token); no decode steps to time');
    return { loadMs, prefillMs, steps };
  } finally {
    await ctx.dispose();
    await model.dispose();
  }
}

function median(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/** Rounds pooled: load time of the first, the best prefill, decode percentiles over every step. */
function speed(raws: Raw[], promptTokens: number): Speed {
  const steps = raws.flatMap((r) => r.steps).sort((a, b) => a - b);
  const p50 = steps[Math.floor(steps.length / 2)]!;
  const prefillMs = Math.min(...raws.map((r) => r.prefillMs));
  return {
    loadMs: round(raws[0]!.loadMs),
    prefillMs: round(prefillMs),
    prefillTokPerS: round((promptTokens * 1000) / prefillMs),
    decodeMsP50: round(p50),
    decodeMsP90: round(steps[Math.floor(steps.length * 0.9)]!),
    decodeTokPerS: round(1000 / p50),
    decodeSteps: steps.length,
  };
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}
