/**
 * Builds the ONNX graph of a Llama-family decoder (Llama, Mistral, Qwen2) from Hugging Face weights, in TypeScript,
 * at load time. The graph leans on onnxruntime's fused CPU contrib ops:
 *
 *   h  = Gather(embed, input_ids)                                         [1, S, H]
 *   x  = SimplifiedLayerNormalization(h)                 (RMSNorm)
 *   per layer:
 *     qkv          = x · Wqkv (+ bias)                   one MatMul       [1, S, (nH + 2·kvH)·hd]
 *     a, k', v'    = attention(qkv, cache k/v)           RoPE (RotaryEmbedding), grouped-query attention over the
 *                                                        read-only cache and the step's own rows (see cacheAttention)
 *     x, h         = SkipSimplifiedLayerNormalization(a · Wo, h)   residual add fused with RMSNorm
 *     m            = (silu(x · Wg) * (x · Wu)) · Wd      gate and up in one MatMul
 *     x, h         = SkipSimplifiedLayerNormalization(m, h)        with the next layer's (or the final) norm
 *   logits = last n rows of x · Wlm                      only the rows asked for: prefill skips the big GEMM
 *
 * Linear weights are f32 (transposed once to [in, out] for MatMul), or 8/4-bit blocks for MatMulNBits.
 * Two I/O conventions: 'native' (what our backend feeds: the cache at its capacity, positions, an attention bias, a
 * logits row count; it returns the new positions' keys and values) and 'optimum' (the transformers.js/Optimum decoder
 * signature, GroupQueryAttention with past -> present), which the tests use to exercise that loader.
 */
import * as ort from 'onnxruntime-node';
import { concatFloat32 } from '../common.js';
import type { ModelConfig } from '../../model/config.js';
import { ropeInvFreq } from '../../model/config.js';
import type { WeightSource } from '../../model/tensor-types.js';
import { f32ToF16 } from '../../model/fp16.js';
import { quantizeBlocks } from '../../model/quantize.js';
import type { WeightFormat } from '../backend.js';
import { OnnxGraphBuilder } from './onnx-graph.js';

export type GraphIo = 'native' | 'optimum';

export interface GraphBuildOptions {
  weights: WeightFormat;
  io?: GraphIo;
  /** Positions the RoPE tables cover (defaults to max_position_embeddings, capped). */
  maxPositions?: number;
}

export interface GraphBuildResult {
  /** Bytes of weights streamed per decoded token: every linear layer and the lm_head once. */
  weightBytesPerToken: number;
  maxPositions: number;
}

/** The native graph's I/O names (the backend and the builder agree on these). */
export const NATIVE_IO = {
  inputIds: 'input_ids',
  logitsRows: 'logits_rows',
  positionIds: 'position_ids',
  attentionBias: 'attention_bias',
  newKey: (i: number) => `new_key.${i}`,
  newValue: (i: number) => `new_value.${i}`,
  logits: 'logits',
  pastKey: (i: number) => `past_key.${i}`,
  pastValue: (i: number) => `past_value.${i}`,
};

/**
 * The native graph's attention_bias for `S` new tokens after `past` cached ones, with the cache fed at `capacity`:
 * [1, 1, 1, S, capacity + S], columns the cache's positions then the new ones; 0 where a query may attend, -inf at
 * stale cache rows, at later new positions (causal) and, with a sliding `window` (Mistral), at keys `window` or more
 * positions behind the query.
 */
export function attentionBias(S: number, past: number, capacity: number, window: number | null = null): ort.Tensor {
  const cols = capacity + S;
  const bias = new Float32Array(S * cols);
  for (let q = 0; q < S; q++) {
    const row = q * cols;
    const first = window ? past + q + 1 - window : 0; // the oldest position this query sees
    if (first > 0) bias.fill(-Infinity, row, row + Math.min(first, past));
    bias.fill(-Infinity, row + past, row + capacity);
    if (first > past) bias.fill(-Infinity, row + capacity, row + capacity + Math.min(first - past, S));
    bias.fill(-Infinity, row + capacity + q + 1, row + cols);
  }
  return new ort.Tensor('float32', bias, [1, 1, 1, S, cols]);
}

/** Optimum / transformers.js decoder names. */
export const OPTIMUM_IO = {
  inputIds: 'input_ids',
  attentionMask: 'attention_mask',
  positionIds: 'position_ids',
  logits: 'logits',
  pastKey: (i: number) => `past_key_values.${i}.key`,
  pastValue: (i: number) => `past_key_values.${i}.value`,
  presentKey: (i: number) => `present.${i}.key`,
  presentValue: (i: number) => `present.${i}.value`,
};

const MAX_ROPE_POSITIONS = 131072;
const QUANT_BLOCK = 32;

export function buildLlamaGraph(cfg: ModelConfig, w: WeightSource, modelPath: string, opts: GraphBuildOptions): GraphBuildResult {
  const g = new OnnxGraphBuilder(modelPath);
  try {
    const result = emit(g, cfg, w, opts);
    g.build({ '': 21, 'com.microsoft': 1 });
    return result;
  } catch (e) {
    g.abandon();
    throw e;
  }
}

function emit(g: OnnxGraphBuilder, cfg: ModelConfig, w: WeightSource, opts: GraphBuildOptions): GraphBuildResult {
  const { hiddenSize: H, numHeads: nH, numKvHeads: kvH, headDim: hd, intermediateSize: I, vocabSize: V } = cfg;
  const io = opts.io ?? 'native';
  const maxPositions = Math.min(opts.maxPositions ?? cfg.maxPositionEmbeddings, MAX_ROPE_POSITIONS);
  let weightBytes = 0;

  // The native graph's attention takes its 1/sqrt(hd) from the query projection (see cacheAttention).
  const qScale = 1 / Math.sqrt(hd);
  const read = (n: string): Float32Array => {
    const x = w.readF32(n);
    if (io !== 'native' || !/\.self_attn\.q_proj\.(weight|bias)$/.test(n)) return x;
    const scaled = new Float32Array(x.length);
    for (let j = 0; j < x.length; j++) scaled[j] = x[j]! * qScale;
    return scaled;
  };

  /**
   * y = x · Wᵀ (+ b) for HF Linear weights stacked along the output dimension ([N_i, K] each), optionally with the
   * output rows reordered: `order[j]` is the block of `block` rows (of the stacked matrix) that becomes block j.
   */
  const linear = (x: string, names: string[], stem: string, o: { bias?: string[]; order?: number[]; block?: number } = {}): string => {
    const K = w.info(names[0]!).shape[1]!;
    const N = names.reduce((a, n) => a + w.info(n).shape[0]!, 0);
    const reorder = (v: Float32Array, cols: number) => (o.order ? permuteBlocks(v, o.block! * cols, o.order) : v);
    const stacked = reorder(names.length === 1 ? read(names[0]!) : concatFloat32(names.map(read)), K);
    const bias = o.bias ? g.constant(`${stem}.bias`, 'float32', [N], reorder(concatFloat32(o.bias.map(read)), 1)) : '';
    if (opts.weights === 'q8' || opts.weights === 'q4') {
      const bits = opts.weights === 'q8' ? 8 : 4;
      const q = quantizeBlocks(stacked, N, K, bits, QUANT_BLOCK);
      const nBlocks = Math.ceil(K / QUANT_BLOCK);
      const b = g.constant(`${stem}.qweight`, 'uint8', [N, nBlocks, (QUANT_BLOCK * bits) / 8], q.data);
      const s = g.constant(`${stem}.scales`, 'float32', [N * nBlocks], q.scales);
      weightBytes += q.data.byteLength + q.scales.byteLength;
      // the bias rides in MatMulNBits' own input (no separate Add)
      const inputs = bias ? [x, b, s, '', '', bias] : [x, b, s];
      return g.op('MatMulNBits', inputs, { K, N, bits, block_size: QUANT_BLOCK, accuracy_level: 4 }, 'com.microsoft');
    }
    const t = g.constant(`${stem}.weight_t`, 'float32', [K, N], transpose(stacked, N, K));
    weightBytes += N * K * 4;
    const y = g.op('MatMul', [x, t]);
    return bias ? g.op('Add', [y, bias]) : y;
  };
  const norm = (name: string) => g.constant(name, 'float32', [H], w.readF32(name));

  // ---- inputs
  const ids = g.input(NATIVE_IO.inputIds, 'int64', [1, 'sequence']);
  let seqlensK = '';
  let totalLength = '';
  let positionIds = '';
  let attnBias = '';
  let logitsRows: string | null = null;
  if (io === 'native') {
    positionIds = g.input(NATIVE_IO.positionIds, 'int64', [1, 'sequence']);
    attnBias = g.input(NATIVE_IO.attentionBias, 'float32', [1, 1, 1, 'sequence', 'keys']);
    logitsRows = g.input(NATIVE_IO.logitsRows, 'int64', [1]);
  } else {
    // Optimum feeds a [1, total] attention mask; GroupQueryAttention wants lengths. position_ids is accepted for
    // signature compatibility; positions follow from the past length.
    const mask = g.input(OPTIMUM_IO.attentionMask, 'int64', [1, 'total']);
    g.input(OPTIMUM_IO.positionIds, 'int64', [1, 'sequence']);
    const total = g.op('ReduceSum', [mask, g.int64s([1])], { keepdims: 0 });
    seqlensK = g.op('Cast', [g.op('Sub', [total, g.int64s([1])])], { to: 6 /* int32 */ });
    const shape = g.op('Shape', [mask]);
    totalLength = g.op('Cast', [g.op('Squeeze', [g.op('Slice', [shape, g.int64s([1]), g.int64s([2])]), g.int64s([0])])], { to: 6 });
  }
  const names = io === 'optimum' ? OPTIMUM_IO : NATIVE_IO;
  const pastKey = (i: number) => names.pastKey(i);
  const pastValue = (i: number) => names.pastValue(i);
  // what each layer returns: the new rows (native) or past + new (Optimum's present)
  const presentKey = (i: number) => (io === 'native' ? NATIVE_IO.newKey(i) : OPTIMUM_IO.presentKey(i));
  const presentValue = (i: number) => (io === 'native' ? NATIVE_IO.newValue(i) : OPTIMUM_IO.presentValue(i));
  for (let i = 0; i < cfg.numLayers; i++) {
    g.input(pastKey(i), 'float32', io === 'native' ? [1, kvH, 1, 'capacity', hd] : [1, kvH, 'past', hd]);
    g.input(pastValue(i), 'float32', io === 'native' ? [1, kvH, 1, 'capacity', hd] : [1, kvH, 'past', hd]);
  }

  // ---- RoPE tables: cos/sin of position · inv_freq, [maxPositions, hd/2]; scaling folded into inv_freq.
  const inv = ropeInvFreq(cfg);
  const cos = new Float32Array(maxPositions * (hd / 2));
  const sin = new Float32Array(maxPositions * (hd / 2));
  for (let p = 0; p < maxPositions; p++)
    for (let j = 0; j < hd / 2; j++) {
      cos[p * (hd / 2) + j] = Math.cos(p * inv[j]!);
      sin[p * (hd / 2) + j] = Math.sin(p * inv[j]!);
    }
  const cosCache = g.constant('rope.cos', 'float32', [maxPositions, hd / 2], cos);
  const sinCache = g.constant('rope.sin', 'float32', [maxPositions, hd / 2], sin);

  /**
   * Attention over a KV cache the graph only reads: keys and values of earlier positions come in as
   * [1, kvH, 1, capacity, hd] buffers the backend owns (fed without a copy; rows past the valid length are masked by
   * `attention_bias`), the step's own rows are computed here, attended to, and returned ([1, kvH, 1, S, hd]) for the
   * backend to append. Nothing proportional to the context is copied or returned, which GroupQueryAttention's
   * past -> present outputs would cost on every step.
   *
   * Queries are [1, kvH, rep, S, hd]: the cache's size-1 axis broadcasts over the rep query heads sharing a KV head,
   * so each (KV head, query head) pair is one batched product with S rows. For a decode step S = 1 and MLAS runs
   * its matrix-vector kernels, which stream K and V once without packing them (it would pack for 2+ rows); that is
   * also why 1/sqrt(hd) is folded into the query weights rather than passed as a GEMM alpha. Scores against the
   * cache and against the new rows are concatenated before one softmax.
   */
  let splitCacheNew = ''; // [capacity, S]: where a score row's cache part ends and its new part begins
  const cacheAttention = (qkv: string, kCache: string, vCache: string, kOut: string, vOut: string): string => {
    const rep = nH / kvH;
    splitCacheNew ||= g.op('Concat', [g.op('Shape', [kCache], { start: 3, end: 4 }), g.op('Shape', [ids], { start: 1, end: 2 })], { axis: 0 });
    // qkv columns come grouped (groupedHeadOrder): per KV head its rep query heads and its key head, then the values
    const [qk, v] = g.node('Split', [qkv, g.int64s([(nH + kvH) * hd, kvH * hd])], 2, { axis: 2 });
    const roped = g.op('RotaryEmbedding', [qk!, positionIds, cosCache, sinCache], { interleaved: 0 }, 'com.microsoft');
    // [1, S, kvH, rep + 1, hd] -> [1, kvH, rep + 1, S, hd] -> queries [1, kvH, rep, S, hd] and keys [1, kvH, 1, S, hd]
    const groups = g.op('Transpose', [g.op('Reshape', [roped, g.int64s([1, 0, kvH, rep + 1, hd])])], { perm: [0, 2, 3, 1, 4] });
    const [q] = g.node('Split', [groups, g.int64s([rep, 1])], [g.fresh('q'), kOut], { axis: 2 }); // q already carries 1/sqrt(hd)
    g.node('Transpose', [g.op('Reshape', [v!, g.int64s([1, 0, kvH, 1, hd])])], [vOut], { perm: [0, 2, 3, 1, 4] });
    const scores = (k: string) => g.op('FusedMatMul', [q!, k], { transB: 1 }, 'com.microsoft');
    const p = g.op('Softmax', [g.op('Add', [g.op('Concat', [scores(kCache), scores(kOut)], { axis: 4 }), attnBias])], { axis: -1 });
    const [pPast, pNew] = g.node('Split', [p, splitCacheNew], 2, { axis: 4 });
    const o = g.op('Add', [g.op('MatMul', [pPast!, vCache]), g.op('MatMul', [pNew!, vOut])]); // [1, kvH, rep, S, hd]
    // back to [1, S, nH·hd]: query head kvh·rep + r, the order o_proj expects
    return g.op('Reshape', [g.op('Transpose', [o], { perm: [0, 3, 1, 2, 4] }), g.int64s([1, 0, nH * hd])]);
  };

  // ---- embedding: [1, S] -> [1, S, H]
  const quantized = opts.weights === 'q8' || opts.weights === 'q4';
  const embedW = w.readF32('model.embed_tokens.weight');
  let h: string;
  let tiedTransposed: string | null = null;
  if (quantized) {
    // f16 table (half the memory of f32, exact enough for a lookup), widened after the gather.
    const e16 = g.constant('embed.f16', 'float16', [V, H], f32ToF16(embedW));
    h = g.op('Cast', [g.op('Gather', [e16, ids])], { to: 1 /* float */ });
  } else if (cfg.tieWordEmbeddings) {
    // Tied f32: keep only the transposed [H, V] copy the lm_head MatMul needs and gather columns from it.
    tiedTransposed = g.constant('embed.weight_t', 'float32', [H, V], transpose(embedW, V, H));
    h = g.op('Transpose', [g.op('Gather', [tiedTransposed, ids], { axis: 1 })], { perm: [1, 2, 0] });
  } else {
    h = g.op('Gather', [g.constant('embed.weight', 'float32', [V, H], embedW), ids]);
  }

  const L = (i: number, s: string) => `model.layers.${i}.${s}`;
  let x = g.op('SimplifiedLayerNormalization', [h, norm(L(0, 'input_layernorm.weight'))], { axis: -1, epsilon: { float: cfg.rmsNormEps } });

  for (let i = 0; i < cfg.numLayers; i++) {
    // attention: one projection for q, k and v; GQA applies RoPE, appends to the cache and attends causally
    const qkvNames = ['q_proj', 'k_proj', 'v_proj'].map((p) => L(i, `self_attn.${p}.weight`));
    const qkv = linear(x, qkvNames, L(i, 'self_attn.qkv_proj'), {
      bias: cfg.attentionBias ? ['q_proj', 'k_proj', 'v_proj'].map((p) => L(i, `self_attn.${p}.bias`)) : undefined,
      ...(io === 'native' ? { order: groupedHeadOrder(nH, kvH), block: hd } : {}),
    });
    const attn =
      io === 'native'
        ? cacheAttention(qkv, pastKey(i), pastValue(i), presentKey(i), presentValue(i))
        : g.node(
            'GroupQueryAttention',
            [qkv, '', '', pastKey(i), pastValue(i), seqlensK, totalLength, cosCache, sinCache],
            [g.fresh('attn'), presentKey(i), presentValue(i)],
            {
              num_heads: nH,
              kv_num_heads: kvH,
              do_rotary: 1,
              rotary_interleaved: 0,
              scale: { float: 1 / Math.sqrt(hd) },
              local_window_size: cfg.slidingWindow ?? -1,
            },
            'com.microsoft',
          )[0];
    const o = linear(attn!, [L(i, 'self_attn.o_proj.weight')], L(i, 'self_attn.o_proj'));
    // residual add + post-attention RMSNorm, fused; output 3 is the new residual stream
    let [xn, , , hn] = g.node('SkipSimplifiedLayerNormalization', [o, h, norm(L(i, 'post_attention_layernorm.weight'))], 4, { epsilon: { float: cfg.rmsNormEps } }, 'com.microsoft');
    h = hn!;
    // SwiGLU MLP: gate and up share one MatMul, split after
    const gu = linear(xn!, [L(i, 'mlp.gate_proj.weight'), L(i, 'mlp.up_proj.weight')], L(i, 'mlp.gate_up_proj'));
    const [gate, up] = g.node('Split', [gu, g.int64s([I, I])], 2, { axis: -1 });
    const act = g.op('Mul', [g.op('Mul', [gate!, g.op('Sigmoid', [gate!])]), up!]);
    const m = linear(act, [L(i, 'mlp.down_proj.weight')], L(i, 'mlp.down_proj'));
    const nextNorm = i + 1 < cfg.numLayers ? L(i + 1, 'input_layernorm.weight') : 'model.norm.weight';
    [xn, , , hn] = g.node('SkipSimplifiedLayerNormalization', [m, h, norm(nextNorm)], 4, { epsilon: { float: cfg.rmsNormEps } }, 'com.microsoft');
    x = xn!;
    h = hn!;
  }

  // ---- lm_head on the rows asked for: [1, n, H] -> [1, n, V]
  if (logitsRows) x = g.op('Slice', [x, g.op('Neg', [logitsRows]), g.int64s([Number.MAX_SAFE_INTEGER]), g.int64s([1])]);
  let logits: string;
  if (quantized) {
    logits = linear(x, [cfg.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight'], 'lm_head');
  } else if (tiedTransposed) {
    logits = g.op('MatMul', [x, tiedTransposed]);
    weightBytes += V * H * 4;
  } else {
    logits = linear(x, ['lm_head.weight'], 'lm_head');
  }
  g.node('Identity', [logits], [NATIVE_IO.logits]);
  g.output(NATIVE_IO.logits, 'float32', [1, io === 'optimum' ? 'sequence' : 'rows', V]);
  for (let i = 0; i < cfg.numLayers; i++) {
    g.output(presentKey(i), 'float32', io === 'native' ? [1, kvH, 1, 'sequence', hd] : [1, kvH, 'total', hd]);
    g.output(presentValue(i), 'float32', io === 'native' ? [1, kvH, 1, 'sequence', hd] : [1, kvH, 'total', hd]);
  }
  return { weightBytesPerToken: weightBytes, maxPositions };
}


/** [rows][cols] -> [cols][rows], in cache-friendly tiles (the lm_head is 150k x 1k). */
function transpose(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(rows * cols);
  const T = 64;
  for (let r0 = 0; r0 < rows; r0 += T)
    for (let c0 = 0; c0 < cols; c0 += T) {
      const r1 = Math.min(r0 + T, rows);
      const c1 = Math.min(c0 + T, cols);
      for (let r = r0; r < r1; r++) for (let c = c0; c < c1; c++) out[c * rows + r] = src[r * cols + c]!;
    }
  return out;
}

/**
 * Head blocks of the fused [q (nH heads) | k (kvH) | v (kvH)] projection regrouped per KV head: its rep query heads
 * then its key head, for every KV head, then the value heads; queries and keys then take RoPE in one op and split
 * into grouped-query form with one transpose.
 */
export function groupedHeadOrder(nH: number, kvH: number): number[] {
  const rep = nH / kvH;
  const order: number[] = [];
  for (let g = 0; g < kvH; g++) {
    for (let r = 0; r < rep; r++) order.push(g * rep + r);
    order.push(nH + g);
  }
  for (let g = 0; g < kvH; g++) order.push(nH + kvH + g);
  return order;
}

/** Blocks of `blockSize` elements of `src` rearranged: block j of the result is block order[j] of src. */
function permuteBlocks(src: Float32Array, blockSize: number, order: readonly number[]): Float32Array {
  if (order.length * blockSize !== src.length) throw new Error(`permuteBlocks: ${order.length} blocks of ${blockSize} for ${src.length} values`);
  const out = new Float32Array(src.length);
  order.forEach((from, j) => out.set(src.subarray(from * blockSize, (from + 1) * blockSize), j * blockSize));
  return out;
}
