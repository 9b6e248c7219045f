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
 *  - 1-D tensors (norms, biases) stay f32 whatever the requested type; q8_0 applies to 2-D weights whose rows are a
 *    multiple of 32 (others fall back to f16), as the converter does.
 *
 * Tokenizers: byte-level BPE (GPT-2, Qwen2, Llama 3 style) as llama.cpp's `gpt2` tokenizer model with its merges;
 * the pre-tokenizer is named by its regex (llama.cpp has a fixed list). SentencePiece/Unigram are refused.
 */
import fs from 'node:fs';
import path from 'node:path';
import { BadInputError } from '../errors.js';
import { ropeInvFreq, type ModelConfig } from './config.js';
import { openModelDir } from './directory.js';
import { f32ToF16 } from './fp16.js';
import { EMBED, FINAL_NORM, LM_HEAD, layerWeight } from './llama.js';
import type { WeightSource } from './tensor-types.js';

export const GGUF_TYPES = ['f32', 'f16', 'q8_0'] as const;
export type GgufType = (typeof GGUF_TYPES)[number];

// ---- format constants (ggml.h / gguf.h)
const GGUF_MAGIC = 0x46554747; // "GGUF" little-endian
const GGUF_VERSION = 3;
const ALIGNMENT = 32;
enum V {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
}
/** ggml tensor types we write (ggml_type values). */
export const GGML_F32 = 0;
export const GGML_F16 = 1;
export const GGML_Q8_0 = 8;
const QK8_0 = 32; // q8_0 block: f16 scale + 32 int8 codes = 34 bytes
/** llama_ftype: what general.file_type says the bulk of the weights are. */
const FILE_TYPE: Record<GgufType, number> = { f32: 0, f16: 1, q8_0: 7 };
/** llama_token_type. */
export const TOKEN_NORMAL = 1;
export const TOKEN_CONTROL = 3;
export const TOKEN_USER_DEFINED = 4;
export const TOKEN_UNUSED = 5;

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

// ---- tokenizer

/** llama.cpp's pre-tokenizer names for the split regexes we know (tokenizer.json's Split pattern). */
const PRE_TOKENIZERS: Array<[name: string, regex: string]> = [
  ['qwen2', "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"],
  ['llama-bpe', "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"],
];

export interface GgufTokenizer {
  /** 'gpt2': byte-level BPE. */
  model: 'gpt2';
  /** llama.cpp pre-tokenizer name. */
  pre: string;
  tokens: string[];
  types: Int32Array;
  merges: string[];
}

type Json = Record<string, unknown>;

/** The tokenizer as llama.cpp's vocabulary: one entry per embedding row (ids the tokenizer lacks become [PADn]). */
export function ggufTokenizer(tokenizerJson: Json, vocabSize: number): GgufTokenizer {
  const model = tokenizerJson.model as Json | undefined;
  if (!model || model.type !== 'BPE') throw new BadInputError(`tokenizer.json: only byte-level BPE tokenizers can be exported to GGUF (model type ${JSON.stringify(model?.type ?? null)})`);
  const pre = preTokenizerName(tokenizerJson.pre_tokenizer as Json | null);
  const vocab = model.vocab as Record<string, number>;
  const tokens: Array<string | undefined> = new Array(vocabSize);
  const types = new Int32Array(vocabSize).fill(TOKEN_NORMAL);
  const put = (id: number, text: string, type: number) => {
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) throw new BadInputError(`tokenizer.json: token ${JSON.stringify(text)} has id ${id}, outside the model's vocabulary of ${vocabSize}`);
    tokens[id] = text;
    types[id] = type;
  };
  for (const [text, id] of Object.entries(vocab)) put(id, text, TOKEN_NORMAL);
  // Added tokens are stored as their text (not byte-level spelled). Special ones, and ones that look like <|...|>,
  // are control tokens (never produced from user text); the rest are user-defined (matched verbatim), as the
  // converter decides.
  for (const t of (tokenizerJson.added_tokens as Array<{ id: number; content: string; special?: boolean }> | undefined) ?? [])
    put(t.id, t.content, t.special || /^<\|.*\|>$/s.test(t.content) ? TOKEN_CONTROL : TOKEN_USER_DEFINED);
  for (let i = 0; i < vocabSize; i++)
    if (tokens[i] === undefined) {
      tokens[i] = `[PAD${i}]`;
      types[i] = TOKEN_UNUSED;
    }
  const merges = ((model.merges as Array<string | [string, string]> | undefined) ?? []).map((m) => (typeof m === 'string' ? m : `${m[0]} ${m[1]}`));
  return { model: 'gpt2', pre, tokens: tokens as string[], types, merges };
}

function preTokenizerName(pt: Json | null): string {
  const parts: Json[] = !pt ? [] : pt.type === 'Sequence' ? ((pt.pretokenizers as Json[]) ?? []) : [pt];
  const byteLevel = parts.find((p) => p.type === 'ByteLevel');
  if (!byteLevel) throw new BadInputError('tokenizer.json: no ByteLevel pre-tokenizer; only byte-level BPE tokenizers can be exported to GGUF');
  const splits = parts.filter((p) => p.type === 'Split');
  if (splits.length === 0 && byteLevel.use_regex !== false) return 'gpt-2'; // ByteLevel's own regex is GPT-2's
  if (splits.length === 1 && byteLevel.use_regex === false) {
    const regex = (splits[0]!.pattern as Json | undefined)?.Regex;
    const known = PRE_TOKENIZERS.find(([, r]) => r === regex);
    if (known) return known[0];
    throw new BadInputError(`tokenizer.json: pre-tokenizer regex ${JSON.stringify(regex)} is not one llama.cpp knows by name`);
  }
  throw new BadInputError('tokenizer.json: unsupported pre-tokenizer sequence for GGUF export');
}

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

function tensorBytes(type: number, n: number): number {
  return type === GGML_F32 ? 4 * n : type === GGML_F16 ? 2 * n : (n / QK8_0) * (2 + QK8_0);
}

/**
 * Hugging Face Llama's q/k rows per head are [half 0 | half 1]; llama.cpp's `llama` RoPE pairs neighbours, so rows
 * go to [h][i][j] from [h][j][i] (j the half, i the position in it). Works for a weight [rows, cols] or a bias [rows].
 */
export function permuteRope(w: Float32Array, heads: number, rows: number): Float32Array {
  const cols = w.length / rows;
  const hd = rows / heads;
  const half = hd / 2;
  const out = new Float32Array(w.length);
  for (let h = 0; h < heads; h++)
    for (let j = 0; j < 2; j++)
      for (let i = 0; i < half; i++) {
        const from = (h * hd + j * half + i) * cols;
        const to = (h * hd + i * 2 + j) * cols;
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
    let t = GGML_F32;
    if (shape.length === 2 && type !== 'f32') t = type === 'q8_0' && ne[0]! % QK8_0 === 0 ? GGML_Q8_0 : GGML_F16;
    plans.push({ name, ne, type: t, bytes: tensorBytes(t, n), values: () => (transform ? transform(w.readF32(hfName)) : w.readF32(hfName)) });
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
    plans.push({ name: 'rope_freqs.weight', ne: [factors.length], type: GGML_F32, bytes: 4 * factors.length, values: () => factors });
  }
  return plans;
}

/** ggml's quantize_row_q8_0_ref: per 32 values, d = absmax/127 (stored f16), codes roundf(x/d). */
export function quantizeQ8_0(x: Float32Array): Uint8Array {
  if (x.length % QK8_0 !== 0) throw new RangeError(`q8_0: ${x.length} values is not a multiple of ${QK8_0}`);
  const blocks = x.length / QK8_0;
  const out = new Uint8Array(blocks * (2 + QK8_0));
  const view = new DataView(out.buffer);
  const half = new Uint16Array(1);
  for (let b = 0; b < blocks; b++) {
    let amax = 0;
    for (let j = 0; j < QK8_0; j++) amax = Math.max(amax, Math.abs(x[b * QK8_0 + j]!));
    const d = Math.fround(amax / 127);
    const id = d ? Math.fround(1 / d) : 0;
    f32ToF16(Float32Array.of(d), half);
    const at = b * (2 + QK8_0);
    view.setUint16(at, half[0]!, true);
    for (let j = 0; j < QK8_0; j++) {
      const v = Math.fround(x[b * QK8_0 + j]! * id);
      view.setInt8(at + 2 + j, Math.sign(v) * Math.round(Math.abs(v))); // roundf: halves away from zero
    }
  }
  return out;
}

function encodeTensor(type: number, x: Float32Array): Uint8Array {
  if (type === GGML_F32) return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
  if (type === GGML_F16) {
    const h = f32ToF16(x);
    return new Uint8Array(h.buffer, h.byteOffset, h.byteLength);
  }
  return quantizeQ8_0(x);
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
  if (model.layout !== 'safetensors') throw new BadInputError(`${dirArg}: GGUF export needs safetensors weights (this directory has only an ONNX export)`);
  const cfg = model.config;
  const arch = cfg.architecture === 'Qwen2ForCausalLM' ? 'qwen2' : 'llama';
  const tokenizerJson = JSON.parse(fs.readFileSync(model.tokenizerFile, 'utf8')) as Json;
  const tok = ggufTokenizer(tokenizerJson, cfg.vocabSize);
  const idOf = new Map<string, number>();
  tok.tokens.forEach((t, i) => idOf.set(t, i));

  const A = (k: string) => `${arch}.${k}`;
  // llama.cpp's llama architecture has no sliding window: within the window both compute the same thing
  const context = cfg.slidingWindow ? Math.min(cfg.slidingWindow, cfg.maxPositionEmbeddings) : cfg.maxPositionEmbeddings;
  const meta: Array<[string, MetaValue]> = [
    ['general.architecture', str(arch)],
    ['general.name', str(path.basename(model.dir))],
    ['general.file_type', u32(FILE_TYPE[type])],
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

  meta.push(
    ['tokenizer.ggml.model', str(tok.model)],
    ['tokenizer.ggml.pre', str(tok.pre)],
    ['tokenizer.ggml.tokens', { type: 'string[]', value: tok.tokens }],
    ['tokenizer.ggml.token_type', { type: 'i32[]', value: tok.types }],
    ['tokenizer.ggml.merges', { type: 'string[]', value: tok.merges }],
  );
  const tc = model.tokenizerConfig ?? {};
  const eos = model.generation.eosTokenIds[0] ?? cfg.eosTokenIds[0];
  if (eos !== undefined) meta.push(['tokenizer.ggml.eos_token_id', u32(eos)]);
  const bos = model.generation.bosTokenId ?? cfg.bosTokenId;
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

  const w = model.weights();
  try {
    const tensors = planTensors(cfg, w, type, arch);
    const bytes = writeGguf(out, meta, tensors);
    return { file: path.resolve(out), architecture: arch, type, tensors: tensors.length, bytes, vocabSize: cfg.vocabSize, preTokenizer: tok.pre };
  } finally {
    w.close();
  }
}

function tokenText(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as Json).content === 'string') return (v as Json).content as string;
  return null;
}

// ---- reading (tests, `model info` on a .gguf): header, metadata and tensor infos, bounds-checked

export interface GgufHeader {
  version: number;
  metadata: Map<string, unknown>;
  tensors: Array<{ name: string; ne: number[]; type: number; offset: number }>;
  /** Absolute file offset of the data region. */
  dataStart: number;
}

export function readGgufHeader(file: string): GgufHeader {
  // the header (vocabulary included) is a few MB even for real models: read a bounded prefix, not the weights
  const fd = fs.openSync(file, 'r');
  let buf: Buffer;
  try {
    buf = Buffer.alloc(Math.min(fs.fstatSync(fd).size, 256 << 20));
    fs.readSync(fd, buf, 0, buf.length, 0);
  } finally {
    fs.closeSync(fd);
  }
  let at = 0;
  const need = (n: number) => {
    if (at + n > buf.length) throw new BadInputError(`${path.basename(file)}: truncated GGUF header`);
  };
  const rU32 = () => (need(4), (at += 4), buf.readUInt32LE(at - 4));
  const rU64 = () => {
    need(8);
    const v = buf.readBigUInt64LE(at);
    at += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new BadInputError(`${path.basename(file)}: GGUF value out of range`);
    return Number(v);
  };
  const rStr = () => {
    const n = rU64();
    need(n);
    at += n;
    return buf.toString('utf8', at - n, at);
  };
  const rScalar = (t: number): unknown => {
    switch (t) {
      case V.U8:
        return need(1), buf.readUInt8(at++);
      case V.I8:
        return need(1), buf.readInt8(at++);
      case V.U16:
        return need(2), (at += 2), buf.readUInt16LE(at - 2);
      case V.I16:
        return need(2), (at += 2), buf.readInt16LE(at - 2);
      case V.U32:
        return rU32();
      case V.I32:
        return need(4), (at += 4), buf.readInt32LE(at - 4);
      case V.F32:
        return need(4), (at += 4), buf.readFloatLE(at - 4);
      case V.BOOL:
        return need(1), buf.readUInt8(at++) !== 0;
      case V.STRING:
        return rStr();
      case V.U64:
        return rU64();
      case V.I64:
        return need(8), (at += 8), Number(buf.readBigInt64LE(at - 8));
      case V.F64:
        return need(8), (at += 8), buf.readDoubleLE(at - 8);
      case V.ARRAY: {
        const et = rU32();
        const n = rU64();
        if (n > buf.length) throw new BadInputError(`${path.basename(file)}: GGUF array length ${n} exceeds the file`);
        return Array.from({ length: n }, () => rScalar(et));
      }
      default:
        throw new BadInputError(`${path.basename(file)}: unknown GGUF value type ${t}`);
    }
  };
  if (rU32() !== GGUF_MAGIC) throw new BadInputError(`${path.basename(file)}: not a GGUF file`);
  const version = rU32();
  const nTensors = rU64();
  const nMeta = rU64();
  const metadata = new Map<string, unknown>();
  for (let i = 0; i < nMeta; i++) {
    const key = rStr();
    metadata.set(key, rScalar(rU32()));
  }
  const tensors: GgufHeader['tensors'] = [];
  for (let i = 0; i < nTensors; i++) {
    const name = rStr();
    const nd = rU32();
    const ne = Array.from({ length: nd }, rU64);
    tensors.push({ name, ne, type: rU32(), offset: rU64() });
  }
  const align = typeof metadata.get('general.alignment') === 'number' ? (metadata.get('general.alignment') as number) : ALIGNMENT;
  return { version, metadata, tensors, dataStart: at + ((align - (at % align)) % align) };
}
