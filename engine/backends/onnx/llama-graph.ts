/**
 * Builds the ONNX graph of a Llama-family decoder (Llama, Mistral, Qwen2) from Hugging Face weights, in TypeScript,
 * at load time. The graph leans on onnxruntime's fused CPU contrib ops:
 *
 *   h  = Gather(embed, input_ids)                                         [1, S, H]
 *   x  = SimplifiedLayerNormalization(h)                 (RMSNorm)
 *   per layer:
 *     qkv          = x · Wqkv (+ bias)                   one MatMul       [1, S, (nH + 2·kvH)·hd]
 *     a, k', v'    = GroupQueryAttention(qkv, past k/v)  RoPE + causal GQA + KV append, one op
 *     x, h         = SkipSimplifiedLayerNormalization(a · Wo, h)   residual add fused with RMSNorm
 *     m            = (silu(x · Wg) * (x · Wu)) · Wd      gate and up in one MatMul
 *     x, h         = SkipSimplifiedLayerNormalization(m, h)        with the next layer's (or the final) norm
 *   logits = last n rows of x · Wlm                      only the rows asked for: prefill skips the big GEMM
 *
 * Linear weights are f32 (transposed once to [in, out] for MatMul), or 8/4-bit blocks for MatMulNBits.
 * Two I/O conventions: 'native' (what our backend feeds: seqlens_k and total length precomputed, a logits row count)
 * and 'optimum' (the transformers.js/Optimum decoder signature), which the tests use to exercise that loader.
 */
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
  seqlensK: 'seqlens_k',
  totalLength: 'total_sequence_length',
  logitsRows: 'logits_rows',
  logits: 'logits',
  pastKey: (i: number) => `past_key.${i}`,
  pastValue: (i: number) => `past_value.${i}`,
  presentKey: (i: number) => `present_key.${i}`,
  presentValue: (i: number) => `present_value.${i}`,
};

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

  /** y = x · Wᵀ for HF Linear weights stacked along the output dimension ([N_i, K] each). */
  const linear = (x: string, names: string[], stem: string): string => {
    const parts = names.map((n) => w.readF32(n));
    const K = w.info(names[0]!).shape[1]!;
    const N = names.reduce((a, n) => a + w.info(n).shape[0]!, 0);
    const stacked = parts.length === 1 ? parts[0]! : concatFloat32(parts);
    if (opts.weights === 'q8' || opts.weights === 'q4') {
      const bits = opts.weights === 'q8' ? 8 : 4;
      const q = quantizeBlocks(stacked, N, K, bits, QUANT_BLOCK);
      const nBlocks = Math.ceil(K / QUANT_BLOCK);
      const b = g.constant(`${stem}.qweight`, 'uint8', [N, nBlocks, (QUANT_BLOCK * bits) / 8], q.data);
      const s = g.constant(`${stem}.scales`, 'float32', [N * nBlocks], q.scales);
      weightBytes += q.data.byteLength + q.scales.byteLength;
      return g.op('MatMulNBits', [x, b, s], { K, N, bits, block_size: QUANT_BLOCK, accuracy_level: 4 }, 'com.microsoft');
    }
    const t = g.constant(`${stem}.weight_t`, 'float32', [K, N], transpose(stacked, N, K));
    weightBytes += N * K * 4;
    return g.op('MatMul', [x, t]);
  };
  const addBias = (x: string, names: string[], stem: string): string =>
    g.op('Add', [x, g.constant(`${stem}.bias`, 'float32', [names.reduce((a, n) => a + w.info(n).shape[0]!, 0)], concatFloat32(names.map((n) => w.readF32(n))))]);
  const norm = (name: string) => g.constant(name, 'float32', [H], w.readF32(name));

  // ---- inputs
  const ids = g.input(NATIVE_IO.inputIds, 'int64', [1, 'sequence']);
  let seqlensK: string;
  let totalLength: string;
  let logitsRows: string | null = null;
  if (io === 'native') {
    seqlensK = g.input(NATIVE_IO.seqlensK, 'int32', [1]);
    totalLength = g.input(NATIVE_IO.totalLength, 'int32', []);
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
  const pastKey = (i: number) => (io === 'native' ? NATIVE_IO.pastKey(i) : OPTIMUM_IO.pastKey(i));
  const pastValue = (i: number) => (io === 'native' ? NATIVE_IO.pastValue(i) : OPTIMUM_IO.pastValue(i));
  const presentKey = (i: number) => (io === 'native' ? NATIVE_IO.presentKey(i) : OPTIMUM_IO.presentKey(i));
  const presentValue = (i: number) => (io === 'native' ? NATIVE_IO.presentValue(i) : OPTIMUM_IO.presentValue(i));
  for (let i = 0; i < cfg.numLayers; i++) {
    g.input(pastKey(i), 'float32', [1, kvH, 'past', hd]);
    g.input(pastValue(i), 'float32', [1, kvH, 'past', hd]);
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
    let qkv = linear(x, qkvNames, L(i, 'self_attn.qkv_proj'));
    if (cfg.attentionBias) qkv = addBias(qkv, ['q_proj', 'k_proj', 'v_proj'].map((p) => L(i, `self_attn.${p}.bias`)), L(i, 'self_attn.qkv_proj'));
    const [attn] = g.node(
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
    );
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
  g.output(NATIVE_IO.logits, 'float32', [1, io === 'native' ? 'rows' : 'sequence', V]);
  for (let i = 0; i < cfg.numLayers; i++) {
    g.output(presentKey(i), 'float32', [1, kvH, 'total', hd]);
    g.output(presentValue(i), 'float32', [1, kvH, 'total', hd]);
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
