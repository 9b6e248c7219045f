/**
 * The WebGPU backend: the Llama-family forward pass on our WGSL kernels (kernels/), through Dawn.
 *
 * Weights are uploaded once at load (linear layers as f32, f16 (converted at upload) or MatMulNBits-style q8/q4
 * blocks; q, k, v stacked into one matrix and gate, up into another). A decode step's products run the GEMV kernel
 * (kernels/gemv.wgsl), prefill chunks the tiled GEMM (kernels/matmul.wgsl); kernels/matmul.ts picks. A forward chunk is one command buffer, per layer:
 *   qkv = RMSNorm(h)·Wqkvᵀ + b        matmul (norm fused into its input)
 *   rope(q, k); k, v -> cache          rope (fused with the KV append)
 *   attn = softmax(q·kᵀ/√d)·v          attention: Q-tiled prefill kernel from 8 rows, else flash-decoding
 *                                      partial + reduce
 *   h += attn·Woᵀ                      matmul (residual add fused into its output)
 *   gu = RMSNorm(h)·[Wg; Wu]ᵀ           matmul
 *   h += (silu(g)·u)·Wdᵀ               matmul (SwiGLU fused into its input)
 * = 7 dispatches per layer in a decode step (6 in a prefill chunk, whose attention is one), plus the embedding lookup
 * and the final norm + lm_head over the rows whose logits are wanted (one more dispatch per extra row part of a matrix
 * or table over the binding limit). Logits and the new positions' keys/values come back in one readback per chunk.
 *
 * forwardRow() keeps the last position's logits on the device: the step ends with the top-k kernel (kernels/topk.wgsl)
 * and reads back k (logit, id) pairs instead of the vocabulary's floats; a monitor's mask is uploaded as a bitset and
 * answered by another top-k over the same row (one more round trip, on masked steps only). On a software adapter
 * (llvmpipe) the kernel is slower than reading the row back, so there the row comes back whole unless devicePicks says
 * otherwise.
 *
 * The dispatch list (pipelines, bind groups, uniform buffers) is recorded once per (cache, rows per chunk, rows of
 * logits) and reused: a decode step writes its token ids and position (two queue.writeBuffer calls), encodes the
 * recorded list into one command buffer and reads back through a pooled staging buffer, so its host work is a few
 * calls per dispatch and creates no GPU objects.
 */
import { checkForward, concatFloat32 } from '../common.js';
import { hostRow, type LogitsRow, type TopTokens } from '../logits-row.js';
import { BadInputError, throwIfAborted } from '../../errors.js';
import { ropeInvFreq, type ModelConfig } from '../../model/config.js';
import type { ModelDir } from '../../model/directory.js';
import { EMBED, FINAL_NORM, LM_HEAD, checkWeights, layerWeight } from '../../model/llama.js';
import type { WeightSource } from '../../model/tensor-types.js';
import { attention, partialFloats } from '../../../kernels/attention.js';
import { embedding, uploadTable, type GpuTable } from '../../../kernels/embedding.js';
import { StagingPool, UNIFORM, UniformPool, encode, openGpu, stepValues, storage, upload, type Dispatch, type GpuContext } from '../../../kernels/gpu.js';
import { matmulSplit, matrixOverTable, uploadSplitMatrix, type MatrixFormat, type SplitMatrix } from '../../../kernels/matmul.js';
import { ropeAppend, ropeTables } from '../../../kernels/rope.js';
import { MAX_TOP_K, decodeTopK, topK, topKScratchBytes } from '../../../kernels/topk.js';
import type { Backend, BackendInfo, ForwardOptions, KvCache, RowOptions, WeightFormat } from '../backend.js';
import { WebGpuKvCache, type KvGeometry } from './kv-cache.js';

export interface WebGpuBackendOptions {
  weights?: WeightFormat;
  /** Accept a software adapter (llvmpipe, SwiftShader). Default true; `auto` passes false. */
  allowSoftware?: boolean;
  /** Tokens per prefill chunk (bounds scratch memory). */
  chunkSize?: number;
  /** Positions a cache may hold (default: the model's, at most 32768). */
  maxPositions?: number;
  /**
   * q8/q4 block scales: f16 (default; a q4 block is 18 bytes instead of 20, as WebLLM's q4f16 and llama.cpp's Q4_0
   * store it) or f32 (ONNX Runtime's MatMulNBits layout, byte for byte). MGD_WEBGPU_SCALES=f32|f16 overrides.
   */
  scales?: 'f32' | 'f16';
  /** The most bytes one storage binding may hold (default: the device's limit); larger matrices and the embedding
   * table are uploaded in row parts. Tests lower it to exercise the split on small models. */
  maxBindingBytes?: number;
  /** forwardRow() answers top-k on the device (default: on a hardware adapter, as llvmpipe reads the row back faster;
   * MGD_WEBGPU_PICKS=device|host overrides the default). */
  devicePicks?: boolean;
}

interface Layer {
  inNorm: GPUBuffer;
  /** With the q, k, v biases when the model has them. */
  qkv: SplitMatrix;
  o: SplitMatrix;
  postNorm: GPUBuffer;
  gateUp: SplitMatrix;
  down: SplitMatrix;
}

interface Scratch {
  tokens: GPUBuffer;
  h: GPUBuffer;
  qkv: GPUBuffer;
  attn: GPUBuffer;
  gu: GPUBuffer;
  part: GPUBuffer;
  logits: GPUBuffer;
  /** The per-step uniform of rope and attention (gpu.ts stepValues), written before each chunk's submit. */
  step: GPUBuffer;
  /** The chunk's new keys and values, [layer][2·kvH][M][hd] (written by rope beside the cache), read back in one copy. */
  fresh: GPUBuffer;
  /** top-k on the device: the allowed-token bitset, the kernel's candidates between passes, its k pairs. */
  mask: GPUBuffer;
  topScratch: GPUBuffer;
  top: GPUBuffer;
}

const DEFAULT_CHUNK = 128;
/** Recorded chunk shapes kept per cache (decode, the prefill chunk, a last prefill chunk...); all dropped past this. */
const MAX_PLANS_PER_CACHE = 8;

/** The weight formats this backend runs (f16: converted from the checkpoint at upload, round to nearest even). */
export const WEBGPU_WEIGHTS: readonly WeightFormat[] = ['f32', 'f16', 'q8', 'q4'];

/** Loads the model onto a WebGPU device. Throws (BadInputError or the device's error) when it cannot. */
export async function loadWebGpuBackend(model: ModelDir, opts: WebGpuBackendOptions = {}): Promise<WebGpuBackend> {
  if (model.layout === 'onnx') throw new BadInputError('the webgpu backend needs safetensors or GGUF weights (not a ready-made ONNX file)');
  const weights = opts.weights ?? 'f32';
  if (!WEBGPU_WEIGHTS.includes(weights)) throw new BadInputError(`the webgpu backend runs ${WEBGPU_WEIGHTS.join(', ')} weights, not ${weights}`);
  const ctx = await openGpu({ allowSoftware: opts.allowSoftware ?? true });
  if (!ctx) throw new Error(opts.allowSoftware === false ? 'no hardware WebGPU adapter' : 'no WebGPU adapter');
  try {
    const w = model.weights();
    try {
      return new WebGpuBackend(ctx, model.config, w, weights, opts);
    } finally {
      w.close();
    }
  } catch (e) {
    ctx.device.destroy();
    throw e;
  }
}

export class WebGpuBackend implements Backend {
  readonly info: BackendInfo;
  private readonly geo: KvGeometry;
  private readonly embed: GpuTable;
  private readonly lmHead: SplitMatrix;
  private readonly finalNorm: GPUBuffer;
  private readonly layers: Layer[];
  private readonly rope: { cos: GPUBuffer; sin: GPUBuffer };
  private readonly scratch: Scratch;
  private readonly chunkSize: number;
  private readonly uniforms: UniformPool;
  private readonly staging: StagingPool;
  /** Recorded dispatches per cache, valid while the cache holds the same device buffers (see plan()). */
  private readonly plans = new WeakMap<WebGpuKvCache, { buffers: GPUBuffer[]; byShape: Map<string, Dispatch[]> }>();
  readonly maxPositions: number;
  /** Set once the device is lost: the reason. The backend is unusable from then on. */
  lostReason: string | null = null;
  /** Dispatches recorded by the last forward chunk (for benchmarks), and how many of them picked the best tokens. */
  lastDispatches = 0;
  lastPickDispatches = 0;
  /** Host milliseconds of the last forward chunk: building and encoding its commands, and unpacking its readback
   * (not the submit itself, which on OpenGL ES also runs the work, nor the wait for the device). */
  lastHostMs = 0;
  /** The quantized formats' scale type (null for f32/f16 weights). */
  readonly scales: 'f32' | 'f16' | null;
  /** Whether forwardRow() picks on the device (see WebGpuBackendOptions.devicePicks). */
  readonly devicePicks: boolean;
  /** top-k dispatch lists by (N, k, masked): they read only the fixed scratch buffers, so one per shape. */
  private readonly topPlans = new Map<string, Dispatch[]>();
  /** Counts forwards: a row is answerable while no later forward overwrote the logits scratch. */
  private generation = 0;
  private disposed = false;

  constructor(
    readonly ctx: GpuContext,
    readonly config: ModelConfig,
    w: WeightSource,
    format: MatrixFormat,
    opts: WebGpuBackendOptions,
  ) {
    checkWeights(config, w);
    const { hiddenSize: H, numHeads: nH, numKvHeads: kvH, headDim: hd, intermediateSize: I, vocabSize: V } = config;
    const d = ctx.device;
    const limit = Math.min(opts.maxBindingBytes ?? Infinity, d.limits.maxStorageBufferBindingSize);
    const envScales = process.env.MGD_WEBGPU_SCALES;
    if (envScales !== undefined && envScales !== 'f32' && envScales !== 'f16') throw new BadInputError(`MGD_WEBGPU_SCALES: expected f32 or f16, got "${envScales}"`);
    const scales = opts.scales ?? envScales ?? 'f16';
    let bytes = 0;
    const matrix = (names: string[], label: string, biases?: string[]): SplitMatrix => {
      const parts = names.map((n) => w.readF32(n));
      const K = w.info(names[0]!).shape[1]!;
      const N = names.reduce((a, n) => a + w.info(n).shape[0]!, 0);
      const stacked = parts.length === 1 ? parts[0]! : concatFloat32(parts);
      const bias = biases && concatFloat32(biases.map((b) => w.readF32(b)));
      const m = uploadSplitMatrix(ctx, stacked, N, K, format, limit, { scales, bias, label });
      bytes += m.bytes;
      return m;
    };
    const vec = (name: string) => upload(d, w.readF32(name), name);
    const L = (i: number, s: string) => layerWeight(i, s);

    // Embedding: f32 with f32 weights, else f16 (as the ONNX graph keeps it beside quantized weights). A tied lm_head
    // in f32 or f16 reads the table itself when its rows are whole blocks; a quantized one is its own matrix.
    const tableFormat = format === 'f32' ? 'f32' : 'f16';
    this.embed = uploadTable(ctx, w.readF32(EMBED), V, H, tableFormat, limit);
    const shared = config.tieWordEmbeddings && format === tableFormat ? matrixOverTable(this.embed) : null;
    if (shared) bytes += shared.bytes;
    this.lmHead = shared ?? matrix([config.tieWordEmbeddings ? EMBED : LM_HEAD], 'lm_head');
    this.finalNorm = vec(FINAL_NORM);
    this.layers = Array.from({ length: config.numLayers }, (_, i) => ({
      inNorm: vec(L(i, 'input_layernorm.weight')),
      qkv: matrix(
        ['q_proj', 'k_proj', 'v_proj'].map((p) => L(i, `self_attn.${p}.weight`)),
        L(i, 'self_attn.qkv_proj'),
        config.attentionBias ? ['q_proj', 'k_proj', 'v_proj'].map((p) => L(i, `self_attn.${p}.bias`)) : undefined,
      ),
      o: matrix([L(i, 'self_attn.o_proj.weight')], L(i, 'self_attn.o_proj')),
      postNorm: vec(L(i, 'post_attention_layernorm.weight')),
      gateUp: matrix([L(i, 'mlp.gate_proj.weight'), L(i, 'mlp.up_proj.weight')], L(i, 'mlp.gate_up_proj')),
      down: matrix([L(i, 'mlp.down_proj.weight')], L(i, 'mlp.down_proj')),
    }));
    this.maxPositions = Math.min(opts.maxPositions ?? config.maxPositionEmbeddings, 32768);
    this.rope = ropeTables(ctx, ropeInvFreq(config), this.maxPositions);
    this.geo = { layers: config.numLayers, kvHeads: kvH, headDim: hd, maxPositions: this.maxPositions };
    const C = (this.chunkSize = opts.chunkSize ?? DEFAULT_CHUNK);
    this.scratch = {
      tokens: storage(d, C * 4),
      h: storage(d, C * H * 4),
      qkv: storage(d, C * (nH + 2 * kvH) * hd * 4),
      attn: storage(d, C * nH * hd * 4),
      gu: storage(d, C * 2 * I * 4),
      part: storage(d, partialFloats(C, nH, hd, this.maxPositions) * 4),
      logits: storage(d, C * V * 4),
      step: d.createBuffer({ size: 16, usage: UNIFORM }),
      fresh: storage(d, C * config.numLayers * 2 * kvH * hd * 4),
      mask: storage(d, Math.ceil(V / 32) * 4),
      topScratch: storage(d, topKScratchBytes(V, MAX_TOP_K)),
      top: storage(d, MAX_TOP_K * 8),
    };
    const picks = process.env.MGD_WEBGPU_PICKS; // 'device' | 'host': to measure either, or to test the device path on llvmpipe
    this.devicePicks = opts.devicePicks ?? (picks === 'device' ? true : picks === 'host' ? false : !ctx.software);
    this.uniforms = new UniformPool(d);
    this.staging = new StagingPool(d);
    this.info = { name: 'webgpu', device: ctx.description, weights: format, weightBytesPerToken: bytes };
    this.scales = format === 'q8' || format === 'q4' ? scales : null;
    void ctx.lost.then((reason) => {
      if (!this.disposed) this.lostReason = reason;
    });
  }

  createCache(): WebGpuKvCache {
    this.checkUsable();
    return WebGpuKvCache.create(this.ctx.device, this.geo);
  }

  async forward(cache: KvCache, tokens: readonly number[], opts: ForwardOptions = {}): Promise<Float32Array> {
    if (!(cache instanceof WebGpuKvCache)) throw new TypeError('webgpu backend: foreign KV cache handle');
    this.checkUsable();
    const rows = checkForward(this.config, this.maxPositions, cache.length, tokens, opts.logitsFor);
    return this.step(cache, await this.leadingChunks(cache, tokens, rows, opts.signal), rows);
  }

  /**
   * Runs every chunk but the last, which it returns: earlier chunks only fill the cache, the last holds every row
   * whose logits are wanted (`rows`). The signal is checked before each chunk, the last included.
   */
  private async leadingChunks(cache: WebGpuKvCache, tokens: readonly number[], rows: number, signal: AbortSignal | undefined): Promise<number[]> {
    for (let start = 0; ; ) {
      throwIfAborted(signal);
      const rest = tokens.length - start;
      let n = Math.min(this.chunkSize, rest);
      if (rest > n && rest - n < rows) n = rest - rows; // keep the wanted rows together in the last chunk
      if (n === rest) return tokens.slice(start);
      await this.step(cache, tokens.slice(start, start + n), 0);
      start += n;
    }
  }

  async forwardRow(cache: KvCache, tokens: readonly number[], opts: RowOptions = {}): Promise<LogitsRow> {
    if (!(cache instanceof WebGpuKvCache)) throw new TypeError('webgpu backend: foreign KV cache handle');
    if (!this.devicePicks) return hostRow(await this.forward(cache, tokens, { signal: opts.signal }));
    this.checkUsable();
    checkForward(this.config, this.maxPositions, cache.length, tokens, 1);
    const V = this.config.vocabSize;
    // the first question, answered in the forward's own submission (without one: the best token, 8 bytes)
    const first = { k: Math.min(Math.max(1, opts.top?.k ?? 1), MAX_TOP_K), N: Math.min(opts.top?.limit ?? V, V) };
    const best = await this.step(cache, await this.leadingChunks(cache, tokens, 1, opts.signal), 1, first);
    const generation = this.generation;
    const current = () => {
      this.checkUsable();
      if (generation !== this.generation) throw new Error('webgpu backend: a logits row was used after the next forward');
    };
    return {
      vocabSize: V,
      top: async (k, allowed, limit) => {
        current();
        const N = Math.min(limit, V);
        if (!allowed && k <= first.k && N === first.N) return { ids: best.ids.slice(0, k), logits: best.logits.slice(0, k) };
        return this.topOnDevice(k, allowed, N);
      },
      read: async () => {
        current();
        return new Float32Array(await this.readBack(this.scratch.logits, V * 4));
      },
    };
  }

  /** The top-k dispatches over logits row 0 for (N, k, masked), recorded once. */
  private topPlan(N: number, k: number, masked: boolean): Dispatch[] {
    const key = `${N}:${k}:${masked}`;
    let ds = this.topPlans.get(key);
    if (!ds) {
      const s = this.scratch;
      ds = topK(this.ctx, { x: s.logits, offset: 0, N, k, mask: masked ? s.mask : null, scratch: s.topScratch, out: s.top, uniforms: this.uniforms });
      this.topPlans.set(key, ds);
    }
    return ds;
  }

  /** A masked (or larger) question about the current row: the mask uploaded, top-k run, k pairs read back. */
  private async topOnDevice(k: number, allowed: Uint32Array | null, N: number): Promise<TopTokens> {
    if (!(k >= 1 && k <= MAX_TOP_K)) throw new RangeError(`webgpu backend: top ${k} is not in 1..${MAX_TOP_K}`);
    const d = this.ctx.device;
    if (allowed) {
      // words the caller's mask lacks allow nothing (TokenMasks' convention)
      const words = new Uint32Array(Math.ceil(N / 32));
      words.set(allowed.subarray(0, words.length));
      d.queue.writeBuffer(this.scratch.mask, 0, words);
    }
    const enc = d.createCommandEncoder();
    const pass = enc.beginComputePass();
    for (const x of this.topPlan(N, k, allowed !== null)) encode(pass, x);
    pass.end();
    return finite(decodeTopK(await this.readBack(this.scratch.top, k * 8, enc), k));
  }

  /** Copies bytes of a buffer back through the staging pool (after the commands already in `enc`, if given). */
  private async readBack(src: GPUBuffer, bytes: number, enc = this.ctx.device.createCommandEncoder()): Promise<ArrayBuffer> {
    const d = this.ctx.device;
    const staging = this.staging.acquire(bytes);
    enc.copyBufferToBuffer(src, 0, staging, 0, bytes);
    d.queue.submit([enc.finish()]);
    await this.mapped(staging, bytes);
    const out = staging.getMappedRange(0, bytes).slice(0);
    staging.unmap();
    this.staging.release(staging);
    return out;
  }

  /** Waits for a staging buffer's readback; a failed map (a lost device) destroys it and says why. */
  private async mapped(staging: GPUBuffer, bytes: number): Promise<void> {
    try {
      await staging.mapAsync(1 /* GPUMapMode.READ */, 0, bytes);
    } catch (e) {
      staging.destroy();
      this.checkUsable();
      throw e;
    }
  }

  /**
   * A chunk's dispatches for (cache, M, rows): pipelines, bind groups and uniform buffers made on first use and reused
   * by every later chunk of that shape on that cache; what changes per chunk (pos0, hence the keys and splits) is read
   * from the step uniform and the token ids from the tokens buffer. A cache whose device buffers were replaced
   * (reserve grew it, free) gets new plans; a cache collected takes its plans with it.
   */
  private plan(cache: WebGpuKvCache, M: number, rows: number): Dispatch[] {
    let entry = this.plans.get(cache);
    if (!entry || entry.buffers !== cache.buffers) {
      entry = { buffers: cache.buffers, byShape: new Map() };
      this.plans.set(cache, entry);
    }
    const key = `${M}:${rows}`;
    const recorded = entry.byShape.get(key);
    if (recorded) return recorded;
    const { hiddenSize: H, numHeads: nH, numKvHeads: kvH, headDim: hd, rmsNormEps: eps } = this.config;
    const s = this.scratch;
    const u = this.uniforms;
    const cap = cache.capacity;
    const step = s.step;
    const ds: Dispatch[] = embedding(this.ctx, this.embed, M, s.tokens, s.h, u);
    const qStride = (nH + 2 * kvH) * hd;
    this.layers.forEach((l, i) => {
      const kv = cache.buffers[i]!;
      ds.push(...matmulSplit(this.ctx, { M, x: s.h, w: l.qkv, y: s.qkv, norm: { gamma: l.inNorm, eps }, uniforms: u }));
      ds.push(ropeAppend(this.ctx, { M, nH, kvH, hd, pos0: 0, cap, qkv: s.qkv, tables: this.rope, kv, step, uniforms: u, fresh: { buffer: s.fresh, offset: i * 2 * kvH * M * hd } }));
      ds.push(...attention(this.ctx, { M, nH, kvH, hd, pos0: 0, cap, window: this.config.slidingWindow ?? 0, q: s.qkv, qStride, kv, part: s.part, out: s.attn, step, maxKeys: cap, uniforms: u }));
      ds.push(...matmulSplit(this.ctx, { M, x: s.attn, w: l.o, y: s.h, accumulate: true, uniforms: u }));
      ds.push(...matmulSplit(this.ctx, { M, x: s.h, w: l.gateUp, y: s.gu, norm: { gamma: l.postNorm, eps }, uniforms: u }));
      ds.push(...matmulSplit(this.ctx, { M, x: s.gu, w: l.down, y: s.h, accumulate: true, swiglu: true, uniforms: u }));
    });
    if (rows) ds.push(...matmulSplit(this.ctx, { M: rows, x: s.h, xOffset: (M - rows) * H, w: this.lmHead, y: s.logits, norm: { gamma: this.finalNorm, eps }, uniforms: u }));
    if (entry.byShape.size >= MAX_PLANS_PER_CACHE) entry.byShape.clear();
    entry.byShape.set(key, ds);
    return ds;
  }

  /**
   * One chunk: one command buffer, one readback: the logits of the last `rows` rows, or with `top` the k best of the
   * last row's (rows = 1, the row itself left on the device), and the new keys/values.
   */
  private async step(cache: WebGpuKvCache, tokens: number[], rows: number): Promise<Float32Array>;
  private async step(cache: WebGpuKvCache, tokens: number[], rows: 1, top: { k: number; N: number }): Promise<TopTokens>;
  private async step(cache: WebGpuKvCache, tokens: number[], rows: number, top?: { k: number; N: number }): Promise<Float32Array | TopTokens> {
    const { numKvHeads: kvH, headDim: hd, vocabSize: V, numLayers } = this.config;
    const t0 = performance.now();
    const d = this.ctx.device;
    const s = this.scratch;
    const M = tokens.length;
    const pos0 = cache.length;
    cache.reserve(pos0 + M);
    const ds = this.plan(cache, M, rows);
    const picks = top ? this.topPlan(top.N, top.k, false) : [];
    this.lastDispatches = ds.length + picks.length;
    this.lastPickDispatches = picks.length;
    this.generation++;
    // the only per-step values: written before the submit, ordered with it on the queue
    d.queue.writeBuffer(s.tokens, 0, Uint32Array.from(tokens));
    d.queue.writeBuffer(s.step, 0, stepValues(pos0));

    // the readback: logits, then per layer and (key|value, head) slot the M new rows (rope packed them so)
    const logitBytes = top ? top.k * 8 : rows * V * 4;
    const slotBytes = M * hd * 4;
    const freshBytes = numLayers * 2 * kvH * slotBytes;
    const bytes = logitBytes + freshBytes;
    const staging = this.staging.acquire(bytes);
    const enc = d.createCommandEncoder();
    const pass = enc.beginComputePass();
    for (const x of ds) encode(pass, x);
    for (const x of picks) encode(pass, x);
    pass.end();
    if (rows) enc.copyBufferToBuffer(top ? s.top : s.logits, 0, staging, 0, logitBytes);
    enc.copyBufferToBuffer(s.fresh, 0, staging, logitBytes, freshBytes);
    const cmd = enc.finish();
    const host = performance.now() - t0;
    d.queue.submit([cmd]);
    await this.mapped(staging, bytes);
    const t1 = performance.now();
    const mapped = staging.getMappedRange(0, bytes);
    const all = new Float32Array(mapped);
    const logits = top ? finite(decodeTopK(new Uint8Array(mapped, 0, logitBytes), top.k)) : all.slice(0, rows * V);
    for (let l = 0; l < numLayers; l++)
      for (let j = 0; j < 2 * kvH; j++) {
        const from = (logitBytes + (l * 2 * kvH + j) * slotBytes) / 4;
        cache.mirror[l]!.set(all.subarray(from, from + M * hd), (j * cache.capacity + pos0) * hd);
      }
    staging.unmap();
    this.staging.release(staging);
    cache.appended(tokens);
    this.lastHostMs = host + (performance.now() - t1);
    return logits;
  }

  exportKv(cache: KvCache, start: number, end: number): Float32Array {
    if (!(cache instanceof WebGpuKvCache)) throw new TypeError('webgpu backend: foreign KV cache handle');
    return cache.exportRange(start, end);
  }

  importKv(tokens: readonly number[], ranges: readonly Float32Array[]): WebGpuKvCache {
    this.checkUsable();
    return WebGpuKvCache.fromRanges(this.ctx.device, this.geo, tokens, ranges);
  }

  private checkUsable(): void {
    if (this.lostReason !== null) throw new DeviceLostError(this.lostReason);
    if (this.disposed) throw new Error('webgpu backend: used after dispose()');
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    this.ctx.device.destroy();
  }
}

/** Drops candidates whose logit is -Infinity: the host's rule (logits-row.ts), where -Infinity means masked. */
function finite(t: TopTokens): TopTokens {
  let n = t.ids.length;
  while (n > 0 && !(t.logits[n - 1]! > -Infinity)) n--;
  return n === t.ids.length ? t : { ids: t.ids.slice(0, n), logits: t.logits.slice(0, n) };
}

export class DeviceLostError extends Error {
  constructor(reason: string) {
    super(`WebGPU device lost (${reason})`);
    this.name = 'DeviceLostError';
  }
}

