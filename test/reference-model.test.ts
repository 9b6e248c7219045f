/**
 * The float64 reference forward pass, checked on cases computed independently, so that "the backend matches the
 * reference" means "the backend is right".
 */
import { describe, expect, it } from 'vitest';
import { parseConfig, ropeInvFreq, type ModelConfig } from '../engine/model/config.js';
import { expectedTensors, checkWeights, referenceForward, ReferenceModel } from '../engine/model/llama.js';
import type { TensorInfo, WeightSource } from '../engine/model/tensor-types.js';
import { configFor, parameterCount } from '../engine/model/make-random.js';

/** An in-memory WeightSource. */
function memory(tensors: Record<string, { shape: number[]; data: Float32Array }>): WeightSource {
  return {
    has: (n) => n in tensors,
    names: () => Object.keys(tensors),
    info: (n): TensorInfo => ({ name: n, dtype: 'F32', shape: tensors[n]!.shape }),
    readF32: (n) => tensors[n]!.data,
    readRaw: (n) => new Uint8Array(tensors[n]!.data.buffer),
    close: () => {},
  };
}

function config(extra: Record<string, unknown> = {}): ModelConfig {
  return parseConfig({
    architectures: ['LlamaForCausalLM'],
    hidden_size: 4,
    intermediate_size: 2,
    num_hidden_layers: 1,
    num_attention_heads: 2,
    num_key_value_heads: 1,
    vocab_size: 3,
    rms_norm_eps: 0,
    tie_word_embeddings: true,
    ...extra,
  });
}

/** Weights from a filler; the embedding and some matrices overridable. */
function weights(cfg: ModelConfig, fill: (name: string, i: number) => number, overrides: Record<string, number[]> = {}): WeightSource {
  const t: Record<string, { shape: number[]; data: Float32Array }> = {};
  for (const e of expectedTensors(cfg)) {
    const n = e.shape.reduce((a, b) => a * b, 1);
    t[e.name] = { shape: e.shape, data: overrides[e.name] ? Float32Array.from(overrides[e.name]!) : Float32Array.from({ length: n }, (_, i) => fill(e.name, i)) };
  }
  return memory(t);
}

describe('reference forward', () => {
  it('with zero attention and MLP weights, logits are RMSNorm(embedding) · embeddingᵀ (tied)', () => {
    const cfg = config();
    const embed = [1, 2, 3, 4, -1, 0, 1, 0, 0.5, 0.5, 0.5, 0.5];
    const w = weights(cfg, (n) => (n.endsWith('norm.weight') ? 1 : 0), { 'model.embed_tokens.weight': embed });
    const [logits] = referenceForward(cfg, w, [0]);
    // x = e0 / rms(e0), rms = sqrt((1+4+9+16)/4) = sqrt(7.5); logits[j] = x · e_j
    const r = Math.sqrt(7.5);
    const x = [1, 2, 3, 4].map((v) => v / r);
    const expected = [0, 1, 2].map((j) => x.reduce((a, v, k) => a + v * embed[j * 4 + k]!, 0));
    for (let j = 0; j < 3; j++) expect(logits![j]).toBeCloseTo(expected[j]!, 12);
  });

  it('attention with zero queries averages the values uniformly over past positions', () => {
    // q = 0 makes every score equal: each position attends uniformly to 0..t. With v = x (identity-ish) and o mixing,
    // the layer output is a running mean; checked against a direct computation.
    const cfg = config({ num_attention_heads: 1, num_key_value_heads: 1, hidden_size: 2, intermediate_size: 1, vocab_size: 2 });
    const I2 = [1, 0, 0, 1];
    const w = weights(cfg, (n) => (n.endsWith('norm.weight') ? 1 : 0), {
      'model.embed_tokens.weight': [3, 4, 1, -1],
      'model.layers.0.self_attn.v_proj.weight': I2,
      'model.layers.0.self_attn.o_proj.weight': I2,
      'model.layers.0.self_attn.k_proj.weight': I2,
    });
    const logits = referenceForward(cfg, w, [0, 1, 1]);
    const e = [[3, 4], [1, -1]];
    const norm = (v: number[]) => {
      const r = Math.sqrt((v[0]! ** 2 + v[1]! ** 2) / 2);
      return v.map((x) => x / r);
    };
    const seq = [0, 1, 1];
    seq.forEach((tokenId, t) => {
      const xs = seq.slice(0, t + 1).map((s) => norm(e[s]!));
      const mean = [0, 1].map((d) => xs.reduce((a, x) => a + x[d]!, 0) / xs.length);
      const h = e[tokenId]!.map((v, d) => v + mean[d]!);
      const out = norm(h);
      for (let j = 0; j < 2; j++) expect(logits[t]![j]).toBeCloseTo(out[0]! * e[j]![0]! + out[1]! * e[j]![1]!, 10);
    });
  });

  it('RoPE frequencies follow rope_theta, with linear scaling folded in', () => {
    const cfg = config({ hidden_size: 4, num_attention_heads: 1, num_key_value_heads: 1, vocab_size: 2, rope_theta: 100 });
    const inv = ropeInvFreq(cfg);
    expect(inv.length).toBe(2);
    expect(inv[0]).toBe(1);
    expect(inv[1]).toBeCloseTo(0.1, 12);
    const linear = ropeInvFreq(config({ rope_scaling: { type: 'linear', factor: 4 } }));
    expect(linear[0]).toBe(0.25);
  });

  it('cached decoding equals full recomputation at every position; GQA and bias included', () => {
    const cfg = parseConfig({
      architectures: ['Qwen2ForCausalLM'],
      hidden_size: 8,
      intermediate_size: 6,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      vocab_size: 11,
      tie_word_embeddings: false,
    });
    let s = 3;
    const w = weights(cfg, () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0), s / 2 ** 32 - 0.5));
    const tokens = [1, 5, 2, 9, 9, 0, 10];
    const full = referenceForward(cfg, w, tokens);
    const m = new ReferenceModel(cfg, w);
    const first = m.forwardAll(tokens.slice(0, 3));
    for (let i = 0; i < 3; i++) expect(Array.from(first[i]!)).toEqual(Array.from(full[i]!));
    for (let i = 3; i < tokens.length; i++) {
      const row = m.forward([tokens[i]!]);
      for (let j = 0; j < cfg.vocabSize; j++) expect(row[j]).toBeCloseTo(full[i]![j]!, 12);
    }
  });

  it('checkWeights names a missing tensor or a wrong shape', () => {
    const cfg = config();
    const ok = weights(cfg, () => 0);
    expect(() => checkWeights(cfg, ok)).not.toThrow();
    const missing = memory({});
    expect(() => checkWeights(cfg, missing)).toThrow(/lack tensor "model.embed_tokens.weight"/);
    const wrong = weights(cfg, () => 0, { 'model.norm.weight': [1, 1, 1] });
    const bad: WeightSource = { ...wrong, info: (n) => (n === 'model.norm.weight' ? { name: n, dtype: 'F32', shape: [3] } : wrong.info(n)) };
    expect(() => checkWeights(cfg, bad)).toThrow(/"model.norm.weight" has shape \[3\] but config.json implies \[4\]/);
  });
});

describe('presets in the real shapes', () => {
  it('parameter counts match the published models', () => {
    expect(parameterCount(configFor('qwen2.5-coder-0.5b'))).toBe(494032768);
    const p15 = parameterCount(configFor('qwen2.5-coder-1.5b'));
    expect(p15).toBeGreaterThan(1.54e9);
    expect(p15).toBeLessThan(1.55e9);
  });
});
