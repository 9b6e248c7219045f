/**
 * GGUF (version 3), llama.cpp's model file: our Llama / Qwen2 checkpoints written so llama.cpp runs the same
 * weights, tokenizer included. What convert_hf_to_gguf.py does for these families, in TypeScript:
 *
 *   file     = header, metadata (key -> typed value), tensor infos (name, dims, type, offset), padding, tensor data
 *   header   = "GGUF", version u32 = 3, tensor count u64, metadata count u64; strings are u64 length + UTF-8
 *   dims     = ggml order: ne[0] is the fastest-varying axis, so a Hugging Face [out, in] weight is ne [in, out]
 *   data     = each tensor at a multiple of the alignment (32) from the start of the data region
 *
 * Names follow llama.cpp (`token_embd`, `blk.N.attn_q`, ...). Two details decide whether the numbers agree:
 *  - llama.cpp's `llama` architecture applies RoPE to interleaved pairs (x0,x1),(x2,x3)...; Hugging Face Llama rotates
 *    halves (x_i, x_{i+hd/2}). So q/k rows are permuted per head, exactly as the converter does. `qwen2` uses the
 *    halves ("NEOX") form and needs no permutation.
 *  - 1-D tensors (norms, biases) stay f32 whatever the requested type; the quantized types apply to 2-D weights
 *    whose rows are whole blocks (K types fall back to 32-value types, those to f16), as llama.cpp does.
 *
 * Tokenizers: byte-level BPE as llama.cpp's `gpt2` tokenizer model with its merges (gguf-tokenizer.ts).
 * Reading GGUF back (any llama.cpp / Ollama file of these families) is gguf-read.ts, gguf-model.ts.
 */
import fs from 'node:fs';
import path from 'node:path';
import { BadInputError } from '../errors.js';
import { parseConfig, ropeInvFreq, type ModelConfig } from './config.js';
import { openModelDir, type ModelDir } from './directory.js';
import { f32ToBf16, f32ToF16 } from './fp16.js';
import { ALIGNMENT, GGUF_MAGIC, GGUF_VERSION, V } from './gguf-read.js';
import { blockValues, GGML_TYPES, quantize, storedBytes } from './gguf-quants.js';
import { ggufTokenizer, type GgufTokenizer } from './gguf-tokenizer.js';
import { EMBED, FINAL_NORM, LM_HEAD, layerWeight } from './llama.js';
import type { WeightSource } from './tensor-types.js';

export const GGUF_TYPES = ['f32', 'f16', 'bf16', 'q8_0', 'q4_0', 'q4_1', 'q5_0', 'q5_1', 'q4_k_m', 'q5_k_m'] as const;
export type GgufType = (typeof GGUF_TYPES)[number];

/** llama_ftype: what general.file_type says the bulk of the weights are. */
const FILE_TYPE: Record<GgufType, number> = { f32: 0, f16: 1, bf16: 32, q4_0: 2, q4_1: 3, q8_0: 7, q5_0: 8, q5_1: 9, q4_k_m: 15, q5_k_m: 17 };
export type MetaValue =
  | { type: 'u32'; value: number }
  | { type: 'i32'; value: number }
  | { type: 'f32'; value: number }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | { type: 'string[]'; value: string[] }
  | { type: 'i32[]'; value: Int32Array | number[] };

const u32 = (value: number): MetaValue => ({ type: 'u32', value });
const f32 = (value: number): MetaValue => ({ type: 'f32', value });
const str = (value: string): MetaValue => ({ type: 'string', value });

type Json = Record<string, unknown>;

// ---- tensors

interface TensorPlan {
  name: string;
  /** ggml dims, fastest first. */
  ne: number[];
  type: number;
  bytes: number;
  /** Produces the f32 values in ggml order (row-major over the HF shape). */
  values: () => Float32Array;
}

const { F32, F16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K } = GGML_TYPES;
/** The ggml type each export type writes a 2-D weight as; the K mixes follow llama.cpp's _M recipes in spirit:
 * embeddings, output, attn_v and ffn_down one notch up (Q6_K), the rest in the main type. */
const MAIN_TYPE: Record<Exclude<GgufType, 'f32' | 'f16' | 'bf16'>, number> = { q8_0: Q8_0, q4_0: Q4_0, q4_1: Q4_1, q5_0: Q5_0, q5_1: Q5_1, q4_k_m: Q4_K, q5_k_m: Q5_K };

function ggmlTypeFor(type: GgufType, name: string, ne: number[]): number {
  if (ne.length !== 2 || type === 'f32') return F32; // norms and biases stay f32, as the converter keeps them
  if (type === 'f16') return F16;
  if (type === 'bf16') return GGML_TYPES.BF16;
  let t = MAIN_TYPE[type];
  if ((type === 'q4_k_m' || type === 'q5_k_m') && /^(token_embd|output|blk\.\d+\.(attn_v|ffn_down))\.weight$/.test(name)) t = Q6_K;
  // rows that are not whole blocks: K types fall back to the 32-value type of the same width (as llama.cpp does),
  // and anything still not whole to f16
  if (ne[0]! % blockValues(t) !== 0) t = t === Q6_K ? Q8_0 : t === Q5_K ? Q5_1 : t === Q4_K ? Q5_0 : t;
  return ne[0]! % blockValues(t) === 0 ? t : F16;
}

/**
 * Hugging Face Llama's q/k rows per head are [half 0 | half 1]; llama.cpp's `llama` RoPE pairs neighbours, so rows
 * go to [h][i][j] from [h][j][i] (j the half, i the position in it). Works for a weight [rows, cols] or a bias [rows].
 */
export function permuteRope(w: Float32Array, heads: number, rows: number): Float32Array {
  return moveRopeRows(w, heads, rows, false);
}

/** The inverse of permuteRope: a llama GGUF's q/k rows back into Hugging Face order. */
export function unpermuteRope(w: Float32Array, heads: number, rows: number): Float32Array {
  return moveRopeRows(w, heads, rows, true);
}

function moveRopeRows(w: Float32Array, heads: number, rows: number, inverse: boolean): Float32Array {
  const cols = w.length / rows;
  const hd = rows / heads;
  const half = hd / 2;
  const out = new Float32Array(w.length);
  for (let h = 0; h < heads; h++)
    for (let j = 0; j < 2; j++)
      for (let i = 0; i < half; i++) {
        const hf = (h * hd + j * half + i) * cols;
        const gg = (h * hd + i * 2 + j) * cols;
        const [from, to] = inverse ? [gg, hf] : [hf, gg];
        out.set(w.subarray(from, from + cols), to);
      }
  return out;
}

function planTensors(cfg: ModelConfig, w: WeightSource, type: GgufType, arch: 'llama' | 'qwen2'): TensorPlan[] {
  const plans: TensorPlan[] = [];
  const add = (name: string, hfName: string, transform?: (x: Float32Array) => Float32Array) => {
    const shape = w.info(hfName).shape;
    const ne = [...shape].reverse();
    const n = shape.reduce((a, b) => a * b, 1);
    const t = ggmlTypeFor(type, name, ne);
    plans.push({ name, ne, type: t, bytes: storedBytes(t, n), values: () => (transform ? transform(w.readF32(hfName)) : w.readF32(hfName)) });
  };
  const { numHeads: nH, numKvHeads: kvH, headDim: hd } = cfg;
  // llama: q/k (and their biases, if any) into interleaved-pair RoPE order
  const permQ = arch === 'llama' ? (x: Float32Array) => permuteRope(x, nH, nH * hd) : undefined;
  const permK = arch === 'llama' ? (x: Float32Array) => permuteRope(x, kvH, kvH * hd) : undefined;

  add('token_embd.weight', EMBED);
  for (let i = 0; i < cfg.numLayers; i++) {
    const L = (n: string) => layerWeight(i, n);
    add(`blk.${i}.attn_norm.weight`, L('input_layernorm.weight'));
    add(`blk.${i}.attn_q.weight`, L('self_attn.q_proj.weight'), permQ);
    add(`blk.${i}.attn_k.weight`, L('self_attn.k_proj.weight'), permK);
    add(`blk.${i}.attn_v.weight`, L('self_attn.v_proj.weight'));
    if (cfg.attentionBias) {
      add(`blk.${i}.attn_q.bias`, L('self_attn.q_proj.bias'), permQ);
      add(`blk.${i}.attn_k.bias`, L('self_attn.k_proj.bias'), permK);
      add(`blk.${i}.attn_v.bias`, L('self_attn.v_proj.bias'));
    }
    add(`blk.${i}.attn_output.weight`, L('self_attn.o_proj.weight'));
    add(`blk.${i}.ffn_norm.weight`, L('post_attention_layernorm.weight'));
    add(`blk.${i}.ffn_gate.weight`, L('mlp.gate_proj.weight'));
    add(`blk.${i}.ffn_up.weight`, L('mlp.up_proj.weight'));
    add(`blk.${i}.ffn_down.weight`, L('mlp.down_proj.weight'));
  }
  add('output_norm.weight', FINAL_NORM);
  // tied embeddings: no output.weight; llama.cpp then reads the logits through token_embd
  if (!cfg.tieWordEmbeddings) add('output.weight', LM_HEAD);
  if (cfg.ropeScaling?.type === 'llama3') {
    // llama.cpp divides each RoPE frequency by rope_freqs[i]: the ratio of unscaled to scaled frequencies
    const scaled = ropeInvFreq(cfg);
    const plain = ropeInvFreq({ ...cfg, ropeScaling: null });
    const factors = Float32Array.from(plain, (p, i) => p / scaled[i]!);
    plans.push({ name: 'rope_freqs.weight', ne: [factors.length], type: F32, bytes: 4 * factors.length, values: () => factors });
  }
  return plans;
}

function encodeTensor(type: number, x: Float32Array): Uint8Array {
  if (type === F32) return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
  if (type === F16 || type === GGML_TYPES.BF16) {
    const h = type === F16 ? f32ToF16(x) : f32ToBf16(x);
    return new Uint8Array(h.buffer, h.byteOffset, h.byteLength);
  }
  return quantize(type, x);
}

// ---- byte-level writing

/** An append-only little-endian buffer for the header (the vocabulary makes it a few MB for real models). */
class Bytes {
  private buf = Buffer.alloc(1 << 16);
  length = 0;

  private room(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const next = Buffer.alloc(Math.max(this.buf.length * 2, this.length + n));
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
  }
  u32(v: number): void {
    this.room(4);
    this.buf.writeUInt32LE(v, this.length);
    this.length += 4;
  }
  i32(v: number): void {
    this.room(4);
    this.buf.writeInt32LE(v, this.length);
    this.length += 4;
  }
  u64(v: number): void {
    this.room(8);
    this.buf.writeBigUInt64LE(BigInt(v), this.length);
    this.length += 8;
  }
  f32(v: number): void {
    this.room(4);
    this.buf.writeFloatLE(v, this.length);
    this.length += 4;
  }
  u8(v: number): void {
    this.room(1);
    this.buf[this.length++] = v;
  }
  string(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    this.room(b.length);
    b.copy(this.buf, this.length);
    this.length += b.length;
  }
  pad(alignment: number): void {
    const n = (alignment - (this.length % alignment)) % alignment;
    this.room(n);
    this.buf.fill(0, this.length, this.length + n);
    this.length += n;
  }
  bytes(): Buffer {
    return this.buf.subarray(0, this.length);
  }
}

function writeValue(b: Bytes, v: MetaValue): void {
  switch (v.type) {
    case 'u32':
      b.u32(V.U32);
      return b.u32(v.value);
    case 'i32':
      b.u32(V.I32);
      return b.i32(v.value);
    case 'f32':
      b.u32(V.F32);
      return b.f32(v.value);
    case 'bool':
      b.u32(V.BOOL);
      return b.u8(v.value ? 1 : 0);
    case 'string':
      b.u32(V.STRING);
      return b.string(v.value);
    case 'string[]':
      b.u32(V.ARRAY);
      b.u32(V.STRING);
      b.u64(v.value.length);
      for (const s of v.value) b.string(s);
      return;
    case 'i32[]':
      b.u32(V.ARRAY);
      b.u32(V.I32);
      b.u64(v.value.length);
      for (const x of v.value) b.i32(x);
      return;
  }
}

/** Writes a GGUF file to a temporary name, then renames it: a crash never leaves a half file under `file`. */
function writeGguf(file: string, metadata: Array<[string, MetaValue]>, tensors: TensorPlan[]): number {
  const h = new Bytes();
  h.u32(GGUF_MAGIC);
  h.u32(GGUF_VERSION);
  h.u64(tensors.length);
  h.u64(metadata.length);
  for (const [key, value] of metadata) {
    h.string(key);
    writeValue(h, value);
  }
  let offset = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    h.string(t.name);
    h.u32(t.ne.length);
    for (const d of t.ne) h.u64(d);
    h.u32(t.type);
    h.u64(offset);
    offsets.push(offset);
    offset += t.bytes + ((ALIGNMENT - (t.bytes % ALIGNMENT)) % ALIGNMENT);
  }
  h.pad(ALIGNMENT);

  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const tmp = path.join(path.dirname(path.resolve(file)), `.${path.basename(file)}.tmp-${process.pid}`);
  const fd = fs.openSync(tmp, 'w');
  try {
    writeAll(fd, h.bytes());
    const zeros = new Uint8Array(ALIGNMENT);
    for (const t of tensors) {
      const data = encodeTensor(t.type, t.values());
      if (data.byteLength !== t.bytes) throw new Error(`gguf: tensor ${t.name} produced ${data.byteLength} bytes, expected ${t.bytes}`);
      writeAll(fd, data);
      writeAll(fd, zeros.subarray(0, (ALIGNMENT - (t.bytes % ALIGNMENT)) % ALIGNMENT));
    }
    fs.closeSync(fd);
    fs.renameSync(tmp, file);
  } catch (e) {
    try {
      fs.closeSync(fd);
    } catch {
      /* already closed */
    }
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  return h.length + offset;
}

function writeAll(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.byteLength) done += fs.writeSync(fd, bytes, done, bytes.byteLength - done);
}

// ---- export

export interface ExportGgufResult {
  file: string;
  architecture: 'llama' | 'qwen2';
  type: GgufType;
  tensors: number;
  bytes: number;
  vocabSize: number;
  preTokenizer: string;
}

/** Writes the model directory's weights and tokenizer as one GGUF file that llama.cpp loads. */
export function exportGguf(dirArg: string, out: string, type: GgufType = 'f32'): ExportGgufResult {
  if (!GGUF_TYPES.includes(type)) throw new BadInputError(`--type must be one of ${GGUF_TYPES.join(', ')}, got "${type}"`);
  const model = openModelDir(dirArg);
  if (model.layout === 'onnx') throw new BadInputError(`${dirArg}: GGUF export needs safetensors or GGUF weights (this directory has only an ONNX export)`);
  const cfg = model.config;
  const arch = cfg.architecture === 'Qwen2ForCausalLM' ? 'qwen2' : 'llama';
  const tokenizerJson = JSON.parse(fs.readFileSync(model.tokenizerFile, 'utf8')) as Json;
  const tok = ggufTokenizer(tokenizerJson, cfg.vocabSize);

  // how mgd prompts this model (generation_config's mgd_prompt), so the file loads back prompted the same way
  const prompt = model.generation.promptMode === 'prefix' ? 'prefix' : { psm: null, spm: 'fim-spm', 'spm-joined': 'fim-spm-joined' }[model.generation.fimOrder];
  const meta: Array<[string, MetaValue]> = [
    ...hparamsMeta(arch, cfg, path.basename(model.dir).replace(/\.gguf$/i, ''), FILE_TYPE[type]),
    ...tokenizerMeta(tok, model.tokenizerConfig ?? {}, endIds(model, tok), model.generation.bosTokenId ?? cfg.bosTokenId),
    ...(prompt ? ([['mgd.prompt', str(prompt)]] as Array<[string, MetaValue]>) : []),
  ];

  const w = model.weights();
  try {
    const tensors = planTensors(cfg, w, type, arch);
    const bytes = writeGguf(out, meta, tensors);
    return { file: path.resolve(out), architecture: arch, type, tensors: tensors.length, bytes, vocabSize: cfg.vocabSize, preTokenizer: tok.pre };
  } finally {
    w.close();
  }
}

/** Every id that ends generation: generation_config's, then tokenizer_config's eos_token (Qwen's <|im_end|>). */
function endIds(model: ModelDir, tok: GgufTokenizer): number[] {
  const ids = model.generation.eosTokenIds.length ? [...model.generation.eosTokenIds] : [...model.config.eosTokenIds];
  const named = tokenText(model.tokenizerConfig?.eos_token);
  const id = named === null ? -1 : tok.tokens.indexOf(named);
  if (id >= 0) ids.push(id);
  return [...new Set(ids)];
}

/** The `general.*` and `<arch>.*` keys: the shape llama.cpp builds the model with. */
function hparamsMeta(arch: string, cfg: ModelConfig, name: string, fileType: number): Array<[string, MetaValue]> {
  const A = (k: string) => `${arch}.${k}`;
  // llama.cpp's llama architecture has no sliding window: within the window both compute the same thing
  const context = cfg.slidingWindow ? Math.min(cfg.slidingWindow, cfg.maxPositionEmbeddings) : cfg.maxPositionEmbeddings;
  const meta: Array<[string, MetaValue]> = [
    ['general.architecture', str(arch)],
    ['general.name', str(name)],
    ['general.file_type', u32(fileType)],
    ['general.quantization_version', u32(2)],
    [A('vocab_size'), u32(cfg.vocabSize)],
    [A('context_length'), u32(context)],
    [A('embedding_length'), u32(cfg.hiddenSize)],
    [A('block_count'), u32(cfg.numLayers)],
    [A('feed_forward_length'), u32(cfg.intermediateSize)],
    [A('attention.head_count'), u32(cfg.numHeads)],
    [A('attention.head_count_kv'), u32(cfg.numKvHeads)],
    [A('attention.key_length'), u32(cfg.headDim)],
    [A('attention.value_length'), u32(cfg.headDim)],
    [A('attention.layer_norm_rms_epsilon'), f32(cfg.rmsNormEps)],
    [A('rope.dimension_count'), u32(cfg.headDim)],
    [A('rope.freq_base'), f32(cfg.ropeTheta)],
  ];
  if (cfg.ropeScaling?.type === 'linear') meta.push([A('rope.scaling.type'), str('linear')], [A('rope.scaling.factor'), f32(cfg.ropeScaling.factor)]);
  return meta;
}

/** The `tokenizer.ggml.*` keys: vocabulary, merges, pre-tokenizer name and the special ids. */
function tokenizerMeta(tok: GgufTokenizer, tc: Json, eos: number[], bos: number | null): Array<[string, MetaValue]> {
  const idOf = new Map<string, number>();
  tok.tokens.forEach((t, i) => idOf.set(t, i));
  const meta: Array<[string, MetaValue]> = [
    ['tokenizer.ggml.model', str(tok.model)],
    ['tokenizer.ggml.pre', str(tok.pre)],
    ['tokenizer.ggml.tokens', { type: 'string[]', value: tok.tokens }],
    ['tokenizer.ggml.token_type', { type: 'i32[]', value: tok.types }],
    ['tokenizer.ggml.merges', { type: 'string[]', value: tok.merges }],
  ];
  // a second end id (a FIM model's end of middle, say) as llama.cpp's end of turn: both end generation
  if (eos[0] !== undefined) meta.push(['tokenizer.ggml.eos_token_id', u32(eos[0])]);
  if (eos[1] !== undefined) meta.push(['tokenizer.ggml.eot_token_id', u32(eos[1])]);
  // all of them, for mgd reading the file back (llama.cpp has keys for two)
  if (eos.length > 2) meta.push(['mgd.eos_token_ids', { type: 'i32[]', value: eos }]);
  if (bos !== null) meta.push(['tokenizer.ggml.bos_token_id', u32(bos)]);
  const pad = tokenText(tc.pad_token);
  if (pad !== null && idOf.has(pad)) meta.push(['tokenizer.ggml.padding_token_id', u32(idOf.get(pad)!)]);
  meta.push(['tokenizer.ggml.add_bos_token', { type: 'bool', value: tc.add_bos_token === true }]);
  // FIM and repository tokens by their Qwen2.5-Coder spelling (llama.cpp would guess them from the text too)
  const fim: Array<[string, string]> = [
    ['fim_pre', '<|fim_prefix|>'],
    ['fim_suf', '<|fim_suffix|>'],
    ['fim_mid', '<|fim_middle|>'],
    ['fim_pad', '<|fim_pad|>'],
    ['fim_rep', '<|repo_name|>'],
    ['fim_sep', '<|file_sep|>'],
  ];
  for (const [key, text] of fim) if (idOf.has(text)) meta.push([`tokenizer.ggml.${key}_token_id`, u32(idOf.get(text)!)]);
  return meta;
}

/**
 * A vocabulary-only GGUF (no tensors), as llama.cpp ships for its tokenizer tests: a tokenizer.json's vocabulary
 * under a small stand-in shape. `pre` names another pre-tokenizer than the one the tokenizer.json has (to compare
 * split rules on one vocabulary); `architecture` another architecture name.
 */
export function writeVocabGguf(tokenizerJson: Json, out: string, o: { pre?: string; architecture?: string } = {}): string {
  const model = tokenizerJson.model as { vocab?: Record<string, number> } | undefined;
  let size = 0;
  for (const id of Object.values(model?.vocab ?? {})) size = Math.max(size, id + 1);
  for (const t of (tokenizerJson.added_tokens as Array<{ id: number }> | undefined) ?? []) size = Math.max(size, t.id + 1);
  const tok = ggufTokenizer(tokenizerJson, size);
  if (o.pre) tok.pre = o.pre;
  const shape = parseConfig({ architectures: ['Qwen2ForCausalLM'], hidden_size: 64, intermediate_size: 128, num_hidden_layers: 1, num_attention_heads: 2, vocab_size: size });
  writeGguf(out, [...hparamsMeta(o.architecture ?? 'qwen2', shape, 'vocab', FILE_TYPE.f32), ...tokenizerMeta(tok, {}, [], null)], []);
  return path.resolve(out);
}

function tokenText(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as Json).content === 'string') return (v as Json).content as string;
  return null;
}
