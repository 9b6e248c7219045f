/**
 * A small byte-level BPE tokenizer for the fixture models, made deterministically in code: the 256 byte symbols,
 * merges learned by plain BPE on a fixed sample of TypeScript below, and the Qwen2.5-Coder special tokens (so FIM
 * prompts are assembled exactly as for the real models). It loads with Hugging Face `tokenizers` like any
 * tokenizer.json.
 */
import { byteLevelChar, toByteLevel } from '../tokenizer/byte-level.js';

export const QWEN_SPECIAL_TOKENS = ['<|endoftext|>', '<|fim_prefix|>', '<|fim_middle|>', '<|fim_suffix|>', '<|fim_pad|>', '<|repo_name|>', '<|file_sep|>'];

const MAX_MERGES = 200;

// GPT-2's pre-tokenization pattern (what the ByteLevel pre-tokenizer applies with use_regex: true).
const PRETOKENIZE = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

const SAMPLE = `import { readFile } from 'node:fs/promises';

export interface Point {
  x: number;
  y: number;
}

export class Vector implements Point {
  constructor(
    public x: number,
    public y: number,
  ) {}

  length(): number {
    return Math.sqrt(this.x * this.x + this.y * this.y);
  }

  add(other: Point): Vector {
    return new Vector(this.x + other.x, this.y + other.y);
  }
}

export async function loadConfig(path: string): Promise<Record<string, string>> {
  const text = await readFile(path, 'utf8');
  const result: Record<string, string> = {};
  for (const line of text.split('\\n')) {
    const index = line.indexOf('=');
    if (index < 0) continue;
    result[line.slice(0, index).trim()] = line.slice(index + 1).trim();
  }
  return result;
}

export function sum(values: number[]): number {
  let total = 0;
  for (const value of values) {
    total += value;
  }
  return total;
}

const items = new Map<string, number>();
items.set('first', 1);
if (items.has('first') && items.get('first') === 1) {
  console.log('found', items.size);
}
export default function main(args: string[]): void {
  const options = { verbose: args.includes('--verbose'), count: Number(args[0] ?? 0) };
  console.log(JSON.stringify(options));
}
`;

/** Plain BPE: repeatedly merge the most frequent adjacent pair (ties: the lexicographically smallest pair). */
function learnMerges(text: string, maxMerges: number): Array<[string, string]> {
  const wordCounts = new Map<string, number>();
  for (const m of text.matchAll(PRETOKENIZE)) {
    const w = toByteLevel(m[0]);
    wordCounts.set(w, (wordCounts.get(w) ?? 0) + 1);
  }
  const words = [...wordCounts].map(([w, count]) => ({ symbols: [...w], count }));
  const merges: Array<[string, string]> = [];
  while (merges.length < maxMerges) {
    const pairs = new Map<string, number>();
    for (const { symbols, count } of words)
      for (let i = 0; i + 1 < symbols.length; i++) {
        const key = symbols[i] + '\u0000' + symbols[i + 1];
        pairs.set(key, (pairs.get(key) ?? 0) + count);
      }
    let best: string | null = null;
    let bestCount = 1; // a pair seen once is not worth a token
    for (const [key, count] of pairs) if (count > bestCount || (count === bestCount && best !== null && key < best)) [best, bestCount] = [key, count];
    if (best === null) break;
    const [a, b] = best.split('\u0000') as [string, string];
    merges.push([a, b]);
    for (const w of words) {
      const out: string[] = [];
      for (let i = 0; i < w.symbols.length; i++) {
        if (i + 1 < w.symbols.length && w.symbols[i] === a && w.symbols[i + 1] === b) {
          out.push(a + b);
          i++;
        } else out.push(w.symbols[i]!);
      }
      w.symbols = out;
    }
  }
  return merges;
}

/** The tokenizer.json object (Hugging Face format). */
export function makeTinyTokenizerJson(): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  for (let b = 0; b < 256; b++) vocab[byteLevelChar(b)] = b;
  const merges = learnMerges(SAMPLE, MAX_MERGES);
  for (const [a, b] of merges) if (!(a + b in vocab)) vocab[a + b] = Object.keys(vocab).length;
  let next = Object.keys(vocab).length;
  const added = QWEN_SPECIAL_TOKENS.map((content) => ({
    id: next++,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }));
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: merges.map(([a, b]) => `${a} ${b}`),
    },
  };
}

/** tokenizer_config.json for it, in the shape Qwen2.5-Coder ships. */
export function makeTinyTokenizerConfig(json: Record<string, unknown>): Record<string, unknown> {
  const added = json.added_tokens as Array<{ id: number; content: string }>;
  return {
    add_bos_token: false,
    add_prefix_space: false,
    added_tokens_decoder: Object.fromEntries(added.map((t) => [String(t.id), { content: t.content, special: true, normalized: false, lstrip: false, rstrip: false, single_word: false }])),
    bos_token: null,
    eos_token: '<|endoftext|>',
    pad_token: '<|endoftext|>',
    model_max_length: 2048,
    tokenizer_class: 'Qwen2Tokenizer',
  };
}
