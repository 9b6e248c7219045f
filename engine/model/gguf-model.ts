/**
 * A GGUF file (llama.cpp, LM Studio, Ollama's blobs) as a model: what `--model file.gguf` opens.
 *
 * The file's metadata becomes what a Hugging Face directory would say: config.json from `<arch>.*` keys and the
 * tensors present (tied embeddings where there is no output.weight, q/k/v biases where blk.0 has them),
 * tokenizer.json from `tokenizer.ggml.*` (gguf-tokenizer.ts), generation settings from the token ids. Those few
 * files are written once per GGUF (keyed by its path, size and mtime) under `<cache>/gguf-models/`, and read by the
 * same code as any model directory, so validation and tokenizer loading are not a second implementation. The
 * weights stay in the GGUF: a WeightSource maps Hugging Face tensor names onto GGUF ones, dequantizes each tensor
 * to f32 on read (gguf-quants.ts) and undoes llama.cpp's RoPE row order for `llama` q/k, so both backends take a
 * GGUF exactly as they take safetensors (re-quantizing with --weights q8/q4 if asked).
 *
 * Families: `llama` (Llama, Mistral, DeepSeek-Coder, Yi ...) and `qwen2` (Qwen2 / Qwen2.5-Coder). Anything the
 * forward pass does not implement (another architecture, partial RoPE, YaRN or Llama 3.1 RoPE scaling) is refused
 * at open with its name, not run wrong.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BadInputError, isDiskFault } from '../errors.js';
import { cacheRoot } from '../paths.js';
import { readModelFiles, type ModelDir } from './directory.js';
import { unpermuteRope } from './gguf.js';
import { dequantize, ggmlTypeName } from './gguf-quants.js';
import { elements, GgufFile } from './gguf-read.js';
import { tokenizerFromGguf } from './gguf-tokenizer.js';
import { EMBED, FINAL_NORM, LM_HEAD } from './llama.js';
import type { TensorInfo, WeightSource } from './tensor-types.js';

type Json = Record<string, unknown>;
type Arch = 'llama' | 'qwen2';
const ARCHITECTURES: Record<Arch, string> = { llama: 'LlamaForCausalLM', qwen2: 'Qwen2ForCausalLM' };

/** Hugging Face's per-layer names -> llama.cpp's. */
const LAYER_NAMES: Record<string, string> = {
  'input_layernorm.weight': 'attn_norm.weight',
  'self_attn.q_proj.weight': 'attn_q.weight',
  'self_attn.k_proj.weight': 'attn_k.weight',
  'self_attn.v_proj.weight': 'attn_v.weight',
  'self_attn.q_proj.bias': 'attn_q.bias',
  'self_attn.k_proj.bias': 'attn_k.bias',
  'self_attn.v_proj.bias': 'attn_v.bias',
  'self_attn.o_proj.weight': 'attn_output.weight',
  'post_attention_layernorm.weight': 'ffn_norm.weight',
  'mlp.gate_proj.weight': 'ffn_gate.weight',
  'mlp.up_proj.weight': 'ffn_up.weight',
  'mlp.down_proj.weight': 'ffn_down.weight',
};
const GLOBAL_NAMES: Record<string, string> = { [EMBED]: 'token_embd.weight', [FINAL_NORM]: 'output_norm.weight', [LM_HEAD]: 'output.weight' };

function ggufName(hfName: string): string | null {
  if (Object.hasOwn(GLOBAL_NAMES, hfName)) return GLOBAL_NAMES[hfName]!;
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(hfName);
  return m && Object.hasOwn(LAYER_NAMES, m[2]!) ? `blk.${m[1]}.${LAYER_NAMES[m[2]!]}` : null;
}

export function openGgufModel(file: string): ModelDir {
  const label = path.basename(file);
  const gguf = new GgufFile(file);
  try {
    const meta = gguf.header.metadata;
    const arch = meta.get('general.architecture');
    if (arch !== 'llama' && arch !== 'qwen2')
      throw new BadInputError(`${label}: GGUF architecture ${JSON.stringify(arch ?? null)} is not supported (mgd runs llama and qwen2)`);
    const tokenizer = tokenizerFromGguf(meta, label);
    const config = configFromGguf(gguf, arch, label, tokenizer.eosTokenIds, tokenizer.bosTokenId);
    const prompt = meta.get('mgd.prompt'); // written by our own export (gguf.ts); absent in other files
    const generation: Json = { eos_token_id: tokenizer.eosTokenIds, bos_token_id: tokenizer.bosTokenId, ...(typeof prompt === 'string' && { mgd_prompt: prompt }) };
    const stat = fs.statSync(file);
    const key = crypto.createHash('sha256').update(JSON.stringify([fs.realpathSync(file), stat.size, stat.mtimeMs, DERIVED_VERSION])).digest('hex').slice(0, 24);
    const derived = writeDerived(`${label.replace(/\.gguf$/i, '')}-${key}`, {
      'config.json': config,
      'tokenizer.json': tokenizer.tokenizer,
      'tokenizer_config.json': tokenizer.tokenizerConfig,
      'generation_config.json': generation,
    });
    const { configText, ...described } = readModelFiles(derived, label);
    return {
      dir: file,
      ...described,
      layout: 'gguf',
      onnxFile: null,
      weights: () => new GgufWeights(file, arch, described.config.numHeads, described.config.numKvHeads),
      fingerprint() {
        let s: fs.Stats;
        try {
          s = fs.statSync(file);
        } catch (e) {
          throw new BadInputError(`${label}: the GGUF file disappeared (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
        }
        return crypto.createHash('sha256').update(configText).update(`\0gguf\0${s.size}\0${s.mtimeMs}`).digest('hex');
      },
    };
  } finally {
    gguf.close();
  }
}

/** Bump when what is derived from a GGUF changes: files derived before are then written again. */
const DERIVED_VERSION = 1;

function configFromGguf(gguf: GgufFile, arch: Arch, label: string, eos: number[], bos: number | null): Json {
  const meta = gguf.header.metadata;
  const get = (k: string) => meta.get(`${arch}.${k}`);
  // f32 metadata (1e-6 is stored as 9.99999997e-7): the shortest decimal of that float, as config.json would say it
  const float = (k: string, fallback: number): number => {
    const v = get(k);
    return typeof v === 'number' && Number.isFinite(v) ? Number(v.toPrecision(7)) : fallback;
  };
  const int = (k: string, fallback?: number): number => {
    const v = get(k) ?? fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw new BadInputError(`${label}: GGUF key ${arch}.${k} is ${v === undefined ? 'missing' : `not a positive integer (${JSON.stringify(v)})`}`);
    return v;
  };
  const hidden = int('embedding_length');
  const heads = int('attention.head_count');
  const headDim = int('attention.key_length', hidden / heads);
  const ropeDims = int('rope.dimension_count', headDim);
  if (ropeDims !== headDim) throw new BadInputError(`${label}: RoPE over ${ropeDims} of ${headDim} head dimensions (partial rotary) is not supported`);
  const scaling = get('rope.scaling.type');
  let ropeScaling: Json | null = null;
  if (scaling === 'linear') ropeScaling = { type: 'linear', factor: float('rope.scaling.factor', 1) };
  else if (scaling !== undefined && scaling !== 'none') throw new BadInputError(`${label}: RoPE scaling ${JSON.stringify(scaling)} is not supported (none or linear)`);
  if (gguf.has('rope_freqs.weight')) throw new BadInputError(`${label}: per-frequency RoPE factors (rope_freqs, Llama 3.1 scaling) are not supported`);
  if (!gguf.has('token_embd.weight')) throw new BadInputError(`${label}: no token_embd.weight tensor (a vocabulary-only GGUF has no weights to run)`);
  const embd = gguf.tensor('token_embd.weight');
  if (embd.ne.length !== 2 || embd.ne[0] !== hidden) throw new BadInputError(`${label}: token_embd.weight has dims ${JSON.stringify(embd.ne)}, not [${hidden}, vocab]`);
  return {
    architectures: [ARCHITECTURES[arch]],
    model_type: arch,
    hidden_size: hidden,
    intermediate_size: int('feed_forward_length'),
    num_hidden_layers: int('block_count'),
    num_attention_heads: heads,
    num_key_value_heads: int('attention.head_count_kv', heads),
    head_dim: headDim,
    vocab_size: embd.ne[1],
    rms_norm_eps: float('attention.layer_norm_rms_epsilon', 1e-6),
    rope_theta: float('rope.freq_base', 10000),
    rope_scaling: ropeScaling,
    max_position_embeddings: int('context_length', 4096),
    tie_word_embeddings: !gguf.has('output.weight'),
    attention_bias: gguf.has('blk.0.attn_q.bias'),
    use_sliding_window: false,
    bos_token_id: bos,
    eos_token_id: eos,
  };
}

/**
 * Writes the derived files into `<cache>/gguf-models/<name>/` (once: a complete entry is reused), built in a
 * temporary directory renamed into place. Where the cache cannot be written (full or read-only disk), a private
 * temporary directory for this process serves instead.
 */
function writeDerived(name: string, files: Record<string, Json>): string {
  const root = path.join(cacheRoot(), 'gguf-models');
  const dir = path.join(root, name);
  if (fs.existsSync(path.join(dir, 'tokenizer.json'))) return dir;
  const write = (into: string) => {
    // tokenizer.json last: its presence marks a complete entry
    for (const f of Object.keys(files).sort((a, b) => Number(a === 'tokenizer.json') - Number(b === 'tokenizer.json'))) fs.writeFileSync(path.join(into, f), JSON.stringify(files[f]));
  };
  let tmp: string | null = null;
  try {
    fs.mkdirSync(root, { recursive: true });
    tmp = fs.mkdtempSync(path.join(root, `.${name}-`));
    write(tmp);
    try {
      fs.renameSync(tmp, dir);
    } catch (e) {
      if (!fs.existsSync(path.join(dir, 'tokenizer.json'))) throw e; // else a concurrent open wrote it first
      fs.rmSync(tmp, { recursive: true, force: true });
    }
    return dir;
  } catch (e) {
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
    if (!isDiskFault(e)) throw e;
    const own = fs.mkdtempSync(path.join(os.tmpdir(), 'mgd-gguf-'));
    process.once('exit', () => fs.rmSync(own, { recursive: true, force: true }));
    write(own);
    return own;
  }
}

/** The GGUF's tensors under Hugging Face names, as f32 in Hugging Face order. */
class GgufWeights implements WeightSource {
  private readonly gguf: GgufFile;

  constructor(
    file: string,
    private readonly arch: Arch,
    private readonly heads: number,
    private readonly kvHeads: number,
  ) {
    this.gguf = new GgufFile(file);
  }

  private tensorOf(name: string) {
    const g = ggufName(name);
    if (g === null || !this.gguf.has(g)) throw new BadInputError(`${path.basename(this.gguf.file)}: no tensor for ${JSON.stringify(name)}${g ? ` (${g})` : ''}`);
    return this.gguf.tensor(g);
  }

  has(name: string): boolean {
    const g = ggufName(name);
    return g !== null && this.gguf.has(g);
  }
  names(): string[] {
    const back = new Map<string, string>();
    for (const [hf, g] of Object.entries(GLOBAL_NAMES)) back.set(g, hf);
    for (const [hf, g] of Object.entries(LAYER_NAMES)) back.set(g, hf);
    const out: string[] = [];
    for (const t of this.gguf.header.tensors) {
      const m = /^blk\.(\d+)\.(.+)$/.exec(t.name);
      const hf = m ? back.get(m[2]!) && `model.layers.${m[1]}.${back.get(m[2]!)}` : back.get(t.name);
      if (hf) out.push(hf);
    }
    return out;
  }
  info(name: string): TensorInfo {
    const t = this.tensorOf(name);
    return { name, dtype: ggmlTypeName(t.type), shape: [...t.ne].reverse() };
  }
  readF32(name: string): Float32Array {
    const t = this.tensorOf(name);
    const x = dequantize(t.type, this.gguf.read(t.name), elements(t));
    // llama.cpp's `llama` RoPE pairs neighbours; the converter permuted q/k rows for it, and our RoPE rotates halves
    if (this.arch === 'llama' && /\.attn_q\./.test(t.name)) return unpermuteRope(x, this.heads, t.ne.length === 2 ? t.ne[1]! : t.ne[0]!);
    if (this.arch === 'llama' && /\.attn_k\./.test(t.name)) return unpermuteRope(x, this.kvHeads, t.ne.length === 2 ? t.ne[1]! : t.ne[0]!);
    return x;
  }
  /** The stored bytes as in the file: ggml blocks, ggml dimension order, llama q/k rows in llama.cpp's order. */
  readRaw(name: string): Uint8Array {
    return this.gguf.read(this.tensorOf(name).name);
  }
  close(): void {
    this.gguf.close();
  }
}
