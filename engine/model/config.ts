/**
 * The model configuration: Hugging Face's config.json for decoder-only Llama-family models, read into one
 * commented shape. Llama, Mistral and Qwen2 share one forward pass (RMSNorm -> attention with RoPE and grouped-query
 * heads -> RMSNorm -> SwiGLU MLP); they differ only in the flags below.
 */
import { BadInputError } from '../errors.js';

export type Architecture = 'LlamaForCausalLM' | 'MistralForCausalLM' | 'Qwen2ForCausalLM';
export const SUPPORTED_ARCHITECTURES: readonly Architecture[] = ['LlamaForCausalLM', 'MistralForCausalLM', 'Qwen2ForCausalLM'];

export interface RopeScaling {
  /** 'linear' divides positions by `factor`; 'llama3' rescales low frequencies (Llama 3.1). */
  type: 'linear' | 'llama3';
  factor: number;
  lowFreqFactor?: number;
  highFreqFactor?: number;
  originalMaxPositionEmbeddings?: number;
}

export interface ModelConfig {
  architecture: Architecture;
  /** d_model: width of the residual stream. */
  hiddenSize: number;
  /** Width of the SwiGLU MLP's hidden layer. */
  intermediateSize: number;
  numLayers: number;
  /** Query heads. */
  numHeads: number;
  /** Key/value heads (grouped-query attention: numHeads is a multiple of it). */
  numKvHeads: number;
  /** Per-head width; hiddenSize / numHeads unless config.json says otherwise. */
  headDim: number;
  vocabSize: number;
  rmsNormEps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling | null;
  maxPositionEmbeddings: number;
  /** lm_head shares the embedding matrix (Qwen2.5 0.5B/1.5B do). */
  tieWordEmbeddings: boolean;
  /** q/k/v projections carry biases (Qwen2). */
  attentionBias: boolean;
  /** Mistral's sliding-window attention width, or null for full attention. */
  slidingWindow: number | null;
  bosTokenId: number | null;
  eosTokenIds: number[];
  /** The checkpoint's stored dtype as declared (the tensors' own headers are authoritative). */
  torchDtype: string | null;
}

type Json = Record<string, unknown>;

function num(c: Json, key: string, fallback?: number): number {
  const v = c[key];
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw new BadInputError(`config.json: missing numeric field "${key}"`);
  }
  throw new BadInputError(`config.json: field "${key}" must be a number, got ${JSON.stringify(v)}`);
}

function posInt(c: Json, key: string, fallback?: number): number {
  const v = num(c, key, fallback);
  if (!Number.isInteger(v) || v <= 0) throw new BadInputError(`config.json: "${key}" must be a positive integer, got ${v}`);
  return v;
}

function ids(v: unknown): number[] {
  if (typeof v === 'number') return [v];
  if (Array.isArray(v)) return v.filter((x): x is number => typeof x === 'number');
  return [];
}

/** Parses and validates config.json's object. Throws BadInputError naming the field on anything unusable. */
export function parseConfig(raw: unknown): ModelConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new BadInputError('config.json: not a JSON object');
  const c = raw as Json;
  const declared = Array.isArray(c.architectures) ? (c.architectures as unknown[]).filter((a): a is string => typeof a === 'string') : [];
  const architecture = declared.find((a): a is Architecture => (SUPPORTED_ARCHITECTURES as readonly string[]).includes(a));
  if (!architecture) {
    const what = declared.length ? declared.join(', ') : `model_type ${JSON.stringify(c.model_type ?? null)}`;
    throw new BadInputError(`unsupported architecture ${what} (supported: ${SUPPORTED_ARCHITECTURES.join(', ')})`);
  }
  const hiddenSize = posInt(c, 'hidden_size');
  const numHeads = posInt(c, 'num_attention_heads');
  const numKvHeads = posInt(c, 'num_key_value_heads', numHeads);
  if (numHeads % numKvHeads !== 0) throw new BadInputError(`config.json: num_attention_heads (${numHeads}) is not a multiple of num_key_value_heads (${numKvHeads})`);
  const headDim = posInt(c, 'head_dim', hiddenSize / numHeads);
  if (headDim % 2 !== 0) throw new BadInputError(`config.json: head_dim ${headDim} must be even for RoPE`);

  let ropeScaling: RopeScaling | null = null;
  const rs = c.rope_scaling;
  if (rs !== undefined && rs !== null) {
    if (typeof rs !== 'object') throw new BadInputError('config.json: rope_scaling must be an object or null');
    const r = rs as Json;
    const type = (r.rope_type ?? r.type) as unknown;
    if (type === 'default') ropeScaling = null;
    else if (type === 'linear') ropeScaling = { type: 'linear', factor: num(r, 'factor') };
    else if (type === 'llama3')
      ropeScaling = {
        type: 'llama3',
        factor: num(r, 'factor'),
        lowFreqFactor: num(r, 'low_freq_factor', 1),
        highFreqFactor: num(r, 'high_freq_factor', 4),
        originalMaxPositionEmbeddings: posInt(r, 'original_max_position_embeddings', 8192),
      };
    else throw new BadInputError(`config.json: unsupported rope_scaling type ${JSON.stringify(type)} (supported: linear, llama3)`);
    if (ropeScaling && !(ropeScaling.factor > 0)) throw new BadInputError('config.json: rope_scaling.factor must be > 0');
  }

  const isQwen2 = architecture === 'Qwen2ForCausalLM';
  const sliding = c.use_sliding_window === false ? null : c.sliding_window;
  return {
    architecture,
    hiddenSize,
    intermediateSize: posInt(c, 'intermediate_size'),
    numLayers: posInt(c, 'num_hidden_layers'),
    numHeads,
    numKvHeads,
    headDim,
    vocabSize: posInt(c, 'vocab_size'),
    rmsNormEps: num(c, 'rms_norm_eps', 1e-6),
    ropeTheta: num(c, 'rope_theta', 10000),
    ropeScaling,
    maxPositionEmbeddings: posInt(c, 'max_position_embeddings', 4096),
    tieWordEmbeddings: c.tie_word_embeddings === true,
    attentionBias: isQwen2 ? c.attention_bias !== false : c.attention_bias === true,
    slidingWindow: typeof sliding === 'number' && !isQwen2 ? sliding : null,
    bosTokenId: typeof c.bos_token_id === 'number' ? c.bos_token_id : null,
    eosTokenIds: ids(c.eos_token_id),
    torchDtype: typeof c.torch_dtype === 'string' ? c.torch_dtype : typeof c.dtype === 'string' ? c.dtype : null,
  };
}

/** Inverse RoPE frequencies (headDim/2 of them), with the configured scaling folded in. */
export function ropeInvFreq(cfg: ModelConfig): Float64Array {
  const half = cfg.headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.pow(cfg.ropeTheta, (2 * i) / cfg.headDim);
  const s = cfg.ropeScaling;
  if (s?.type === 'linear') for (let i = 0; i < half; i++) inv[i] /= s.factor;
  if (s?.type === 'llama3') {
    const low = s.lowFreqFactor ?? 1;
    const high = s.highFreqFactor ?? 4;
    const orig = s.originalMaxPositionEmbeddings ?? 8192;
    const lowWavelen = orig / low;
    const highWavelen = orig / high;
    for (let i = 0; i < half; i++) {
      const wavelen = (2 * Math.PI) / inv[i]!;
      if (wavelen > lowWavelen) inv[i] = inv[i]! / s.factor;
      else if (wavelen >= highWavelen) {
        const smooth = (orig / wavelen - low) / (high - low);
        inv[i] = (1 - smooth) * (inv[i]! / s.factor) + smooth * inv[i]!;
      }
    }
  }
  return inv;
}
