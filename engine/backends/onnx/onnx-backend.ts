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
import { capacityFor, copyHeadRows, OrtKvCache, type KvShape } from './kv-cache.js';
import { attentionBias, NATIVE_IO, OPTIMUM_IO } from './llama-graph.js';

export interface OnnxBackendOptions {
  /** Weight format for graphs we build (ignored for ready-made ONNX files). Default f32. */
  weights?: WeightFormat;
  /** Intra-op threads; default: every core. */
  threads?: number;
  /** Tokens per prefill chunk. */
  chunkSize?: number;
  /** Where a degraded load says so (the graph cache cannot be written). */
  warn?: (message: string) => void;
}

const DEFAULT_CHUNK = 512;
/** Smallest prefill chunk, whatever the context. */
const MIN_CHUNK = 16;
/** Bound on one chunk's attention scores per layer (bytes); longer contexts get shorter chunks. */
const SCORE_BYTES = 64 * 1024 * 1024;

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
  if (model.layout !== 'onnx') {
    weights = opts.weights ?? 'f32';
    const built = ensureGraph(model, weights, 'native', opts.warn);
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
    this.kvShape = { layers: config.numLayers, kvHeads: config.numKvHeads, headDim: config.headDim, maxPositions };
  }

  createCache(): OrtKvCache {
    return OrtKvCache.empty(this.kvShape);
  }

  async forward(cache: KvCache, tokens: readonly number[], opts: ForwardOptions = {}): Promise<Float32Array> {
    if (!(cache instanceof OrtKvCache)) throw new TypeError('onnx backend: foreign KV cache handle');
    const rows = checkForward(this.config, this.maxPositions, cache.length, tokens, opts.logitsFor);
    const chunk = this.chunkFor(capacityFor(cache.length + tokens.length));

    // Earlier chunks only fill the cache; the last holds at least the rows whose logits are wanted.
    let start = 0;
    while (tokens.length - start > chunk && tokens.length - start - chunk >= rows) {
      throwIfAborted(opts.signal);
      await this.step(cache, tokens.slice(start, start + chunk), 1);
      start += chunk;
    }
    throwIfAborted(opts.signal);
    return this.step(cache, tokens.slice(start), rows);
  }

  /**
   * Tokens per prefill chunk: the configured size, smaller where the attention scores of a chunk
   * ([heads, chunk, capacity + chunk] floats) would pass SCORE_BYTES.
   */
  private chunkFor(capacity: number): number {
    const perToken = 4 * this.config.numHeads * (capacity + this.chunkSize);
    return Math.max(MIN_CHUNK, Math.min(this.chunkSize, Math.floor(SCORE_BYTES / perToken)));
  }

  private async step(cache: OrtKvCache, tokens: number[], rows: number): Promise<Float32Array> {
    const out = this.io === 'native' ? await this.runNative(cache, tokens, rows) : await this.runOptimum(cache, tokens);
    const logits = out[NATIVE_IO.logits]!;
    const data = logits.data as Float32Array;
    const V = logits.dims[2]!;
    // Native graphs return exactly `rows` rows; Optimum graphs return every position.
    return data.subarray(data.length - rows * V);
  }

  /** Our graph: the cache goes in as it is (no copy) and only the new positions' keys and values come back. */
  private async runNative(cache: OrtKvCache, tokens: number[], rows: number): Promise<ort.InferenceSession.OnnxValueMapType> {
    const past = cache.length;
    const S = tokens.length;
    const L = this.config.numLayers;
    cache.prepare();
    const feeds: Record<string, ort.Tensor> = {
      [NATIVE_IO.inputIds]: new ort.Tensor('int64', BigInt64Array.from(tokens, BigInt), [1, S]),
      [NATIVE_IO.positionIds]: new ort.Tensor('int64', BigInt64Array.from(tokens, (_, i) => BigInt(past + i)), [1, S]),
      [NATIVE_IO.attentionBias]: attentionBias(S, past, cache.capacity, this.config.slidingWindow),
      [NATIVE_IO.logitsRows]: new ort.Tensor('int64', BigInt64Array.of(BigInt(rows)), [1]),
    };
    for (let i = 0; i < L; i++) {
      feeds[NATIVE_IO.pastKey(i)] = cache.keys(i);
      feeds[NATIVE_IO.pastValue(i)] = cache.values(i);
    }
    const out = await this.session.run(feeds);
    cache.append(
      Array.from({ length: L }, (_, i) => out[NATIVE_IO.newKey(i)]!.data as Float32Array),
      Array.from({ length: L }, (_, i) => out[NATIVE_IO.newValue(i)]!.data as Float32Array),
      tokens,
    );
    return out;
  }

  /** A transformers.js/Optimum graph: exact-length past tensors in, whole present tensors out (both copied). */
  private async runOptimum(cache: OrtKvCache, tokens: number[]): Promise<ort.InferenceSession.OnnxValueMapType> {
    const past = cache.length;
    const S = tokens.length;
    const total = past + S;
    const L = this.config.numLayers;
    cache.prepare();
    const feeds: Record<string, ort.Tensor> = {
      [OPTIMUM_IO.inputIds]: new ort.Tensor('int64', BigInt64Array.from(tokens, BigInt), [1, S]),
    };
    const inputs = new Set(this.session.inputNames);
    if (inputs.has(OPTIMUM_IO.attentionMask)) feeds[OPTIMUM_IO.attentionMask] = new ort.Tensor('int64', new BigInt64Array(total).fill(1n), [1, total]);
    if (inputs.has(OPTIMUM_IO.positionIds)) feeds[OPTIMUM_IO.positionIds] = new ort.Tensor('int64', BigInt64Array.from(tokens, (_, i) => BigInt(past + i)), [1, S]);
    for (let i = 0; i < L; i++) [feeds[OPTIMUM_IO.pastKey(i)], feeds[OPTIMUM_IO.pastValue(i)]] = cache.exactTensors(i);
    const out = await this.session.run(feeds);
    const lastRows = (t: ort.Tensor) => {
      const rowsOut = new Float32Array(this.kvShape.kvHeads * S * this.kvShape.headDim);
      copyHeadRows(this.kvShape, t.data as Float32Array, total, past, rowsOut, S, 0, S);
      return rowsOut;
    };
    cache.append(
      Array.from({ length: L }, (_, i) => lastRows(out[OPTIMUM_IO.presentKey(i)]!)),
      Array.from({ length: L }, (_, i) => lastRows(out[OPTIMUM_IO.presentValue(i)]!)),
      tokens,
    );
    return out;
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
