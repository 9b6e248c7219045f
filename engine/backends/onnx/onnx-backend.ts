/**
 * The ONNX Runtime backend: the CPU default.
 *
 * From safetensors it runs the graph llama-graph.ts builds (cached on disk by build-cache.ts); from a
 * transformers.js/Optimum directory it runs the exported onnx/model.onnx as is. Either way the KV cache is carried
 * between calls in OrtKvCache handles, and a long prompt is prefilled in chunks so cancellation is checked between
 * them and attention memory stays bounded.
 */
import { checkForward } from '../common.js';
import os from 'node:os';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { BadInputError, oneLine, throwIfAborted } from '../../errors.js';
import type { ModelConfig } from '../../model/config.js';
import type { ModelDir } from '../../model/directory.js';
import type { Backend, BackendInfo, ForwardOptions, KvCache, WeightFormat } from '../backend.js';
import { ensureGraph } from './build-cache.js';
import { OrtKvCache, type KvShape } from './kv-cache.js';
import { NATIVE_IO, OPTIMUM_IO } from './llama-graph.js';

export interface OnnxBackendOptions {
  /** Weight format for graphs we build (ignored for ready-made ONNX files). Default f32. */
  weights?: WeightFormat;
  /** Intra-op threads; default: every core. */
  threads?: number;
  /** Tokens per prefill chunk. */
  chunkSize?: number;
}

const DEFAULT_CHUNK = 512;

export async function loadOnnxBackend(model: ModelDir, opts: OnnxBackendOptions = {}): Promise<OnnxBackend> {
  const threads = opts.threads ?? os.availableParallelism();
  if (!Number.isInteger(threads) || threads < 1) throw new BadInputError(`threads must be a positive integer, got ${threads}`);
  const sessionOptions: ort.InferenceSession.SessionOptions = {
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: 'all',
    logSeverityLevel: 3,
  };
  let modelPath: string;
  let weights: WeightFormat;
  let weightBytesPerToken: number;
  let maxPositions = model.config.maxPositionEmbeddings;
  let io: 'native' | 'optimum';
  if (model.layout === 'safetensors') {
    weights = opts.weights ?? 'f32';
    const built = ensureGraph(model, weights);
    modelPath = built.modelPath;
    weightBytesPerToken = built.weightBytesPerToken;
    maxPositions = built.maxPositions;
    io = 'native';
  } else {
    modelPath = model.onnxFile!;
    weights = 'f32';
    weightBytesPerToken = 0; // unknown for foreign graphs; benchmarks report null GB/s then
    io = 'optimum';
  }
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(modelPath, sessionOptions);
  } catch (e) {
    throw new BadInputError(`${path.relative(model.dir, modelPath).startsWith('..') ? 'built graph' : path.relative(model.dir, modelPath)}: onnxruntime could not load it: ${oneLine(e)}`);
  }
  const info: BackendInfo = { name: 'onnx', device: `cpu (${threads} threads)`, weights, weightBytesPerToken };
  const backend = new OnnxBackend(model.config, info, session, io, maxPositions, opts.chunkSize ?? DEFAULT_CHUNK);
  if (io === 'optimum') backend.checkOptimumSignature();
  return backend;
}

export class OnnxBackend implements Backend {
  private readonly kvShape: KvShape;

  constructor(
    readonly config: ModelConfig,
    readonly info: BackendInfo,
    private readonly session: ort.InferenceSession,
    private readonly io: 'native' | 'optimum',
    readonly maxPositions: number,
    private readonly chunkSize: number,
  ) {
    this.kvShape = { layers: config.numLayers, kvHeads: config.numKvHeads, headDim: config.headDim };
  }

  createCache(): OrtKvCache {
    return OrtKvCache.empty(this.kvShape);
  }

  async forward(cache: KvCache, tokens: readonly number[], opts: ForwardOptions = {}): Promise<Float32Array> {
    if (!(cache instanceof OrtKvCache)) throw new TypeError('onnx backend: foreign KV cache handle');
    const rows = checkForward(this.config, this.maxPositions, cache.length, tokens, opts.logitsFor);

    // Earlier chunks only fill the cache; the last holds at least the rows whose logits are wanted.
    let start = 0;
    while (tokens.length - start > this.chunkSize && tokens.length - start - this.chunkSize >= rows) {
      throwIfAborted(opts.signal);
      await this.step(cache, tokens.slice(start, start + this.chunkSize), 1);
      start += this.chunkSize;
    }
    throwIfAborted(opts.signal);
    return this.step(cache, tokens.slice(start), rows);
  }

  private async step(cache: OrtKvCache, tokens: number[], rows: number): Promise<Float32Array> {
    const past = cache.length;
    const total = past + tokens.length;
    const L = this.config.numLayers;
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', BigInt64Array.from(tokens, BigInt), [1, tokens.length]),
    };
    const names = this.io === 'native' ? NATIVE_IO : OPTIMUM_IO;
    if (this.io === 'native') {
      feeds[NATIVE_IO.seqlensK] = new ort.Tensor('int32', Int32Array.of(total - 1), [1]);
      feeds[NATIVE_IO.totalLength] = new ort.Tensor('int32', Int32Array.of(total), []);
      feeds[NATIVE_IO.logitsRows] = new ort.Tensor('int64', BigInt64Array.of(BigInt(rows)), [1]);
    } else {
      const inputs = new Set(this.session.inputNames);
      if (inputs.has(OPTIMUM_IO.attentionMask)) feeds[OPTIMUM_IO.attentionMask] = new ort.Tensor('int64', new BigInt64Array(total).fill(1n), [1, total]);
      if (inputs.has(OPTIMUM_IO.positionIds))
        feeds[OPTIMUM_IO.positionIds] = new ort.Tensor('int64', BigInt64Array.from(tokens, (_, i) => BigInt(past + i)), [1, tokens.length]);
    }
    for (let i = 0; i < L; i++) {
      feeds[names.pastKey(i)] = cache.key(i);
      feeds[names.pastValue(i)] = cache.value(i);
    }
    const out = await this.session.run(feeds);
    cache.update(
      Array.from({ length: L }, (_, i) => out[names.presentKey(i)]!),
      Array.from({ length: L }, (_, i) => out[names.presentValue(i)]!),
      tokens,
    );
    const logits = out[names.logits]!;
    const data = logits.data as Float32Array;
    const V = logits.dims[2]!;
    // Native graphs return exactly `rows` rows; Optimum graphs return every position.
    return data.subarray(data.length - rows * V);
  }

  exportKv(cache: KvCache, start: number, end: number): Float32Array {
    if (!(cache instanceof OrtKvCache)) throw new TypeError('onnx backend: foreign KV cache handle');
    return cache.exportRange(start, end);
  }

  importKv(tokens: readonly number[], ranges: readonly Float32Array[]): OrtKvCache {
    return OrtKvCache.fromRanges(this.kvShape, tokens, ranges);
  }

  /** Fails with a clear message when an ONNX file does not have the Optimum decoder-with-past signature. */
  checkOptimumSignature(): void {
    const inputs = new Set(this.session.inputNames);
    const outputs = new Set(this.session.outputNames);
    const missing: string[] = [];
    if (!inputs.has(OPTIMUM_IO.inputIds)) missing.push(OPTIMUM_IO.inputIds);
    if (!outputs.has(OPTIMUM_IO.logits)) missing.push(OPTIMUM_IO.logits);
    for (let i = 0; i < this.config.numLayers; i++) {
      for (const n of [OPTIMUM_IO.pastKey(i), OPTIMUM_IO.pastValue(i)]) if (!inputs.has(n)) missing.push(n);
      for (const n of [OPTIMUM_IO.presentKey(i), OPTIMUM_IO.presentValue(i)]) if (!outputs.has(n)) missing.push(n);
    }
    if (missing.length)
      throw new BadInputError(`onnx model lacks the decoder-with-past signature (input_ids, past_key_values.{i}.key|value -> logits, present.{i}.key|value): missing ${missing.slice(0, 4).join(', ')}${missing.length > 4 ? ', ...' : ''}`);
  }

  async dispose(): Promise<void> {
    await this.session.release();
  }
}
