/**
 * The Llama family (Llama, Mistral, Qwen2) in one readable file: the checkpoint's weight names and a reference
 * forward pass in plain TypeScript with float64 activations and accumulation.
 *
 * The reference is slow and simple on purpose. It shares nothing with the backends but the config, so every backend
 * (the ONNX graph, the WebGPU kernels) is checked against it on the fixture models. Shapes in comments: S new
 * positions, T total positions, H hidden, nH query heads, kvH key/value heads, hd head width, I MLP width, V vocab.
 */
import { BadInputError } from '../errors.js';
import { ropeInvFreq, type ModelConfig } from './config.js';
import type { WeightSource } from './tensor-types.js';

// ---- weight names (Hugging Face)
export const EMBED = 'model.embed_tokens.weight';
export const FINAL_NORM = 'model.norm.weight';
export const LM_HEAD = 'lm_head.weight';
export const layerWeight = (i: number, name: string) => `model.layers.${i}.${name}`;

/** Every tensor the config implies, with its shape (HF Linear weights are [out, in]). */
export function expectedTensors(cfg: ModelConfig): Array<{ name: string; shape: number[] }> {
  const { hiddenSize: H, numHeads: nH, numKvHeads: kvH, headDim: hd, intermediateSize: I, vocabSize: V } = cfg;
  const out = [{ name: EMBED, shape: [V, H] }];
  for (let i = 0; i < cfg.numLayers; i++) {
    const L = (n: string, shape: number[]) => out.push({ name: layerWeight(i, n), shape });
    L('input_layernorm.weight', [H]);
    L('self_attn.q_proj.weight', [nH * hd, H]);
    L('self_attn.k_proj.weight', [kvH * hd, H]);
    L('self_attn.v_proj.weight', [kvH * hd, H]);
    if (cfg.attentionBias) {
      L('self_attn.q_proj.bias', [nH * hd]);
      L('self_attn.k_proj.bias', [kvH * hd]);
      L('self_attn.v_proj.bias', [kvH * hd]);
    }
    L('self_attn.o_proj.weight', [H, nH * hd]);
    L('post_attention_layernorm.weight', [H]);
    L('mlp.gate_proj.weight', [I, H]);
    L('mlp.up_proj.weight', [I, H]);
    L('mlp.down_proj.weight', [H, I]);
  }
  out.push({ name: FINAL_NORM, shape: [H] });
  if (!cfg.tieWordEmbeddings) out.push({ name: LM_HEAD, shape: [V, H] });
  return out;
}

/** Throws a BadInputError naming the first missing tensor or wrong shape. */
export function checkWeights(cfg: ModelConfig, w: WeightSource): void {
  for (const t of expectedTensors(cfg)) {
    if (!w.has(t.name)) throw new BadInputError(`weights lack tensor "${t.name}" that config.json implies`);
    const shape = w.info(t.name).shape;
    if (shape.length !== t.shape.length || shape.some((d, i) => d !== t.shape[i]))
      throw new BadInputError(`tensor "${t.name}" has shape [${shape}] but config.json implies [${t.shape}]`);
  }
}

interface LayerWeights {
  inNorm: Float32Array;
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  qb: Float32Array | null;
  kb: Float32Array | null;
  vb: Float32Array | null;
  o: Float32Array;
  postNorm: Float32Array;
  gate: Float32Array;
  up: Float32Array;
  down: Float32Array;
}

/**
 * A model with a KV cache: `forward(tokens)` runs the new positions after everything seen so far and returns the
 * logits of the last one (forwardAll: of each). referenceForward() recomputes from scratch.
 */
export class ReferenceModel {
  private readonly embed: Float32Array;
  private readonly lmHead: Float32Array;
  private readonly finalNorm: Float32Array;
  private readonly layers: LayerWeights[];
  private readonly invFreq: Float64Array;
  /** Per layer: keys/values of every position so far, [T][kvH * hd] (RoPE already applied to keys). */
  private readonly keys: Float64Array[][];
  private readonly values: Float64Array[][];
  private position = 0;

  constructor(
    readonly cfg: ModelConfig,
    w: WeightSource,
  ) {
    checkWeights(cfg, w);
    this.embed = w.readF32(EMBED);
    this.lmHead = cfg.tieWordEmbeddings ? this.embed : w.readF32(LM_HEAD);
    this.finalNorm = w.readF32(FINAL_NORM);
    const get = (i: number, n: string) => w.readF32(layerWeight(i, n));
    const bias = (i: number, n: string) => (cfg.attentionBias ? get(i, n) : null);
    this.layers = Array.from({ length: cfg.numLayers }, (_, i) => ({
      inNorm: get(i, 'input_layernorm.weight'),
      q: get(i, 'self_attn.q_proj.weight'),
      k: get(i, 'self_attn.k_proj.weight'),
      v: get(i, 'self_attn.v_proj.weight'),
      qb: bias(i, 'self_attn.q_proj.bias'),
      kb: bias(i, 'self_attn.k_proj.bias'),
      vb: bias(i, 'self_attn.v_proj.bias'),
      o: get(i, 'self_attn.o_proj.weight'),
      postNorm: get(i, 'post_attention_layernorm.weight'),
      gate: get(i, 'mlp.gate_proj.weight'),
      up: get(i, 'mlp.up_proj.weight'),
      down: get(i, 'mlp.down_proj.weight'),
    }));
    this.invFreq = ropeInvFreq(cfg);
    this.keys = this.layers.map(() => []);
    this.values = this.layers.map(() => []);
  }

  /** Runs the new positions; returns the logits of the last one. */
  forward(tokens: readonly number[]): Float64Array {
    const rows = this.forwardAll(tokens);
    return rows[rows.length - 1]!;
  }

  /** Runs the new positions; returns the logits of each. */
  forwardAll(tokens: readonly number[]): Float64Array[] {
    if (tokens.length === 0) throw new RangeError('forward: no tokens');
    return tokens.map((t) => this.step(t));
  }

  /** One position through the whole stack. */
  private step(token: number): Float64Array {
    const { hiddenSize: H, numHeads: nH, numKvHeads: kvH, headDim: hd, vocabSize: V } = this.cfg;
    if (!(token >= 0 && token < V)) throw new RangeError(`token ${token} outside the vocabulary`);
    const pos = this.position++;
    // embedding lookup: h [H]
    const h = Float64Array.from(this.embed.subarray(token * H, (token + 1) * H));

    for (let li = 0; li < this.layers.length; li++) {
      const l = this.layers[li]!;
      // --- attention block: x = RMSNorm(h); q, k, v = x·Wqᵀ, x·Wkᵀ, x·Wvᵀ (+ bias)
      const x = rmsNorm(h, l.inNorm, this.cfg.rmsNormEps);
      const q = linear(x, l.q, nH * hd, H, l.qb); // [nH * hd]
      const k = linear(x, l.k, kvH * hd, H, l.kb); // [kvH * hd]
      const v = linear(x, l.v, kvH * hd, H, l.vb);
      // RoPE on every head of q and k at this position
      for (let hh = 0; hh < nH; hh++) rope(q, hh * hd, hd, pos, this.invFreq);
      for (let hh = 0; hh < kvH; hh++) rope(k, hh * hd, hd, pos, this.invFreq);
      this.keys[li]!.push(k);
      this.values[li]!.push(v);
      // causal attention over positions 0..pos (or the sliding window), query head hh reads kv head hh / (nH/kvH)
      const T = pos + 1;
      const first = this.cfg.slidingWindow ? Math.max(0, T - this.cfg.slidingWindow) : 0;
      const attn = new Float64Array(nH * hd);
      const group = nH / kvH;
      const scale = 1 / Math.sqrt(hd);
      for (let hh = 0; hh < nH; hh++) {
        const kvh = Math.floor(hh / group);
        const scores = new Float64Array(T - first);
        let max = -Infinity;
        for (let t = first; t < T; t++) {
          const kt = this.keys[li]![t]!;
          let s = 0;
          for (let d = 0; d < hd; d++) s += q[hh * hd + d]! * kt[kvh * hd + d]!;
          scores[t - first] = s * scale;
          max = Math.max(max, s * scale);
        }
        let sum = 0;
        for (let i = 0; i < scores.length; i++) sum += scores[i] = Math.exp(scores[i]! - max);
        for (let t = first; t < T; t++) {
          const p = scores[t - first]! / sum;
          const vt = this.values[li]![t]!;
          for (let d = 0; d < hd; d++) attn[hh * hd + d]! += p * vt[kvh * hd + d]!;
        }
      }
      // output projection and residual: h = h + attn·Woᵀ
      const o = linear(attn, l.o, H, nH * hd, null);
      for (let i = 0; i < H; i++) h[i]! += o[i]!;

      // --- MLP block (SwiGLU): h = h + (silu(x·Wgᵀ) * (x·Wuᵀ))·Wdᵀ with x = RMSNorm(h)
      const x2 = rmsNorm(h, l.postNorm, this.cfg.rmsNormEps);
      const I = this.cfg.intermediateSize;
      const g = linear(x2, l.gate, I, H, null);
      const u = linear(x2, l.up, I, H, null);
      for (let i = 0; i < I; i++) g[i] = (g[i]! / (1 + Math.exp(-g[i]!))) * u[i]!;
      const m = linear(g, l.down, H, I, null);
      for (let i = 0; i < H; i++) h[i]! += m[i]!;
    }
    // final norm and lm_head: logits [V]
    return linear(rmsNorm(h, this.finalNorm, this.cfg.rmsNormEps), this.lmHead, V, H, null);
  }
}

/** Logits at every position of `tokens`, computed from scratch. */
export function referenceForward(cfg: ModelConfig, w: WeightSource, tokens: readonly number[]): Float64Array[] {
  return new ReferenceModel(cfg, w).forwardAll(tokens);
}

/** x / sqrt(mean(x²) + eps) * weight */
function rmsNorm(x: Float64Array, weight: Float32Array, eps: number): Float64Array {
  let ss = 0;
  for (let i = 0; i < x.length; i++) ss += x[i]! * x[i]!;
  const r = 1 / Math.sqrt(ss / x.length + eps);
  return Float64Array.from(x, (v, i) => v * r * weight[i]!);
}

/** y[n] = Σ_k x[k]·W[n][k] (+ b[n]) for W [N][K], HF Linear layout. */
function linear(x: Float64Array, W: Float32Array, N: number, K: number, b: Float32Array | null): Float64Array {
  const y = new Float64Array(N);
  for (let n = 0; n < N; n++) {
    let s = b ? b[n]! : 0;
    const row = n * K;
    for (let k = 0; k < K; k++) s += x[k]! * W[row + k]!;
    y[n] = s;
  }
  return y;
}

/** Rotary embedding, "rotate half" pairing: (x[i], x[i + hd/2]) rotated by pos·invFreq[i]. */
function rope(x: Float64Array, off: number, hd: number, pos: number, invFreq: Float64Array): void {
  const half = hd / 2;
  for (let i = 0; i < half; i++) {
    const a = pos * invFreq[i]!;
    const c = Math.cos(a);
    const s = Math.sin(a);
    const x0 = x[off + i]!;
    const x1 = x[off + i + half]!;
    x[off + i] = x0 * c - x1 * s;
    x[off + i + half] = x1 * c + x0 * s;
  }
}
