/**
 * Tokenizers between Hugging Face's tokenizer.json and GGUF's `tokenizer.ggml.*` metadata, both ways:
 *  - export (gguf.ts): a byte-level BPE tokenizer.json as llama.cpp's `gpt2` tokenizer model;
 *  - import (gguf-model.ts): a GGUF's vocabulary, token types, merges and pre-tokenizer name back into a
 *    tokenizer.json, which the `tokenizers` library then runs, so a GGUF model tokenizes as its original did.
 *
 * The pre-tokenizer is the part GGUF names rather than stores: llama.cpp keeps a fixed table from a name
 * (`tokenizer.ggml.pre`) to split regexes. PRE_TOKENIZERS is that table for the byte-level families code models use,
 * each as the tokenizer.json pre_tokenizer its Hugging Face original has; one table serves both directions.
 * SentencePiece (`llama` model: Llama 2, CodeLlama) and names not in the table are refused with their name.
 */
import { BadInputError } from '../errors.js';

/** llama_token_type. */
export const TOKEN_NORMAL = 1;
export const TOKEN_UNKNOWN = 2;
export const TOKEN_CONTROL = 3;
export const TOKEN_USER_DEFINED = 4;
export const TOKEN_UNUSED = 5;
export const TOKEN_BYTE = 6;

type Json = Record<string, unknown>;

/** One step of a byte-level pre-tokenizer, as tokenizer.json spells it. */
type Part = { split: string } | { digits: true } | { byteLevel: { useRegex: boolean } };

interface PreTokenizer {
  /** llama.cpp's names for it; the first is the one export writes. */
  names: string[];
  parts: Part[];
  /** BPE `ignore_merges`: a word that is itself a token is not merged further (Llama 3). */
  ignoreMerges?: boolean;
  /** The original's normalizer (Qwen2's tokenizer.json applies NFC). */
  nfc?: boolean;
}

const QWEN2 = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const LLAMA3 = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const DEEPSEEK3_WORDS = "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+";

export const PRE_TOKENIZERS: PreTokenizer[] = [
  { names: ['qwen2'], parts: [{ split: QWEN2 }, { byteLevel: { useRegex: false } }], nfc: true },
  { names: ['llama-bpe', 'llama3', 'llama-v3', 'falcon3', 'pixtral'], parts: [{ split: LLAMA3 }, { byteLevel: { useRegex: false } }], ignoreMerges: true },
  { names: ['deepseek-v3'], parts: [{ split: '\\p{N}{1,3}' }, { split: '[一-龥぀-ゟ゠-ヿ]+' }, { split: DEEPSEEK3_WORDS }, { byteLevel: { useRegex: false } }] },
  {
    names: ['deepseek-coder'],
    parts: [{ split: '[\r\n]' }, { split: '\\s?\\p{L}+' }, { split: '\\s?\\p{P}+' }, { split: '[一-龥ࠀ-一가-퟿]+' }, { digits: true }, { byteLevel: { useRegex: false } }],
  },
  { names: ['starcoder', 'refact', 'smollm', 'codeshell'], parts: [{ digits: true }, { byteLevel: { useRegex: true } }] },
  // ByteLevel's own regex is GPT-2's
  { names: ['gpt-2', 'mpt', 'olmo', 'phi-2'], parts: [{ byteLevel: { useRegex: true } }] },
];

const KNOWN_NAMES = PRE_TOKENIZERS.flatMap((p) => p.names);

function partJson(p: Part): Json {
  if ('split' in p) return { type: 'Split', pattern: { Regex: p.split }, behavior: 'Isolated', invert: false };
  if ('digits' in p) return { type: 'Digits', individual_digits: true };
  return { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: p.byteLevel.useRegex };
}

/** A tokenizer.json pre_tokenizer reduced to what decides the split: its steps and their patterns. */
function signature(parts: Json[]): string {
  return JSON.stringify(
    parts.map((p) => {
      if (p.type === 'Split') return ['Split', (p.pattern as Json | undefined)?.Regex ?? (p.pattern as Json | undefined)?.String, p.behavior, p.invert === true];
      if (p.type === 'Digits') return ['Digits', p.individual_digits === true];
      if (p.type === 'ByteLevel') return ['ByteLevel', p.use_regex !== false, p.add_prefix_space === true];
      return [p.type];
    }),
  );
}

/** llama.cpp's name for a tokenizer.json pre_tokenizer (export). */
export function preTokenizerName(pt: Json | null | undefined): string {
  const parts: Json[] = !pt ? [] : pt.type === 'Sequence' ? ((pt.pretokenizers as Json[]) ?? []) : [pt];
  if (!parts.some((p) => p.type === 'ByteLevel')) throw new BadInputError('tokenizer.json: no ByteLevel pre-tokenizer; only byte-level BPE tokenizers can be exported to GGUF');
  const sig = signature(parts);
  const known = PRE_TOKENIZERS.find((p) => signature(p.parts.map(partJson)) === sig);
  if (!known) throw new BadInputError(`tokenizer.json: its pre-tokenizer is not one llama.cpp knows by name (mgd knows ${PRE_TOKENIZERS.map((p) => p.names[0]).join(', ')})`);
  return known.names[0]!;
}

// ---- export: tokenizer.json -> GGUF vocabulary

export interface GgufTokenizer {
  /** 'gpt2': byte-level BPE. */
  model: 'gpt2';
  /** llama.cpp pre-tokenizer name. */
  pre: string;
  tokens: string[];
  types: Int32Array;
  merges: string[];
}

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

// ---- import: GGUF metadata -> tokenizer.json

export interface ImportedTokenizer {
  /** tokenizer.json's object. */
  tokenizer: Json;
  /** tokenizer_config.json's object (bos/eos/pad spelled, add_bos_token). */
  tokenizerConfig: Json;
  eosTokenIds: number[];
  bosTokenId: number | null;
}

const stringArray = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');
const numberArray = (v: unknown): v is number[] => Array.isArray(v) && v.every((x) => typeof x === 'number');

/** The GGUF's tokenizer as a tokenizer.json; `label` names the file in errors. */
export function tokenizerFromGguf(meta: Map<string, unknown>, label: string): ImportedTokenizer {
  const model = meta.get('tokenizer.ggml.model');
  if (model === undefined) throw new BadInputError(`${label}: no tokenizer in the GGUF metadata (tokenizer.ggml.model)`);
  if (model !== 'gpt2')
    throw new BadInputError(`${label}: tokenizer model ${JSON.stringify(model)} is not supported (mgd reads byte-level BPE, llama.cpp's "gpt2"; ${model === 'llama' ? 'SentencePiece vocabularies such as Llama 2 / CodeLlama are not' : 'this one is not'})`);
  const tokens = meta.get('tokenizer.ggml.tokens');
  if (!stringArray(tokens) || tokens.length === 0) throw new BadInputError(`${label}: tokenizer.ggml.tokens is missing or not a list of strings`);
  const rawTypes = meta.get('tokenizer.ggml.token_type');
  const types = numberArray(rawTypes) && rawTypes.length === tokens.length ? rawTypes : tokens.map(() => TOKEN_NORMAL);
  const merges = meta.get('tokenizer.ggml.merges');
  if (!stringArray(merges)) throw new BadInputError(`${label}: tokenizer.ggml.merges is missing (a byte-level BPE vocabulary needs its merges)`);
  const preName = typeof meta.get('tokenizer.ggml.pre') === 'string' ? (meta.get('tokenizer.ggml.pre') as string) : 'gpt-2';
  const pre = PRE_TOKENIZERS.find((p) => p.names.includes(preName));
  if (!pre) throw new BadInputError(`${label}: pre-tokenizer ${JSON.stringify(preName)} is not supported (mgd knows ${KNOWN_NAMES.join(', ')})`);

  const vocab: Record<string, number> = {};
  const added: Json[] = [];
  tokens.forEach((text, id) => {
    const type = types[id];
    if (type === TOKEN_CONTROL || type === TOKEN_USER_DEFINED)
      // matched in raw text before the split; control tokens never come from user text
      added.push({ id, content: text, single_word: false, lstrip: false, rstrip: false, normalized: false, special: type === TOKEN_CONTROL });
    else if (type !== TOKEN_UNUSED && !Object.hasOwn(vocab, text)) vocab[text] = id;
  });
  const tokenizer: Json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: pre.nfc ? { type: 'NFC' } : null,
    pre_tokenizer: pre.parts.length === 1 ? partJson(pre.parts[0]!) : { type: 'Sequence', pretokenizers: pre.parts.map(partJson) },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: pre.ignoreMerges === true,
      vocab,
      merges,
    },
  };

  const id = (key: string): number | null => {
    const v = meta.get(`tokenizer.ggml.${key}`);
    return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < tokens.length ? v : null;
  };
  const bos = id('bos_token_id');
  // end of generation: eos, and the end-of-turn token where the file names one (chat and FIM models stop on both)
  const eos = [id('eos_token_id'), id('eot_token_id'), id('eom_token_id')].filter((x): x is number => x !== null);
  const ours = meta.get('mgd.eos_token_ids'); // our export's full list, where llama.cpp's keys hold two
  if (numberArray(ours)) eos.push(...ours.filter((x) => Number.isInteger(x) && x >= 0 && x < tokens.length));
  const pad = id('padding_token_id');
  const tokenizerConfig: Json = {
    add_bos_token: meta.get('tokenizer.ggml.add_bos_token') === true,
    ...(bos !== null && { bos_token: tokens[bos] }),
    ...(eos.length && { eos_token: tokens[eos[0]!] }),
    ...(pad !== null && { pad_token: tokens[pad] }),
  };
  return { tokenizer, tokenizerConfig, eosTokenIds: [...new Set(eos)], bosTokenId: bos };
}
