/**
 * TextTokenizer over Hugging Face `tokenizers` (the Rust library's Node binding): encoding is the library's, so it
 * matches what the model was trained with exactly. On top of it, read from tokenizer.json at load:
 *  - the exact bytes of every id (byte-level BPE or SentencePiece spelling; special tokens contribute none), which
 *    makes decoding synchronous and exact, and is what the monitors' vocabulary trie is built from;
 *  - the special tokens, so user text containing "<|endoftext|>" is encoded as text, not as the control token;
 *  - the FIM tokens of the three common spellings.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Tokenizer } from 'tokenizers';
import { BadInputError } from '../errors.js';
import { byteLevelBytes, sentencePieceBytes } from './byte-level.js';
import type { FimTokens, TextTokenizer } from './types.js';

export interface LoadTokenizerOptions {
  tokenizerConfig?: Record<string, unknown> | null;
  eosTokenIds?: number[];
  bosTokenId?: number | null;
}

interface AddedToken {
  id: number;
  content: string;
  special?: boolean;
}

const END_TOKENS = ['<|endoftext|>', '</s>', '<|end_of_text|>', '<eos>', '<|end|>'];
const EMPTY = new Uint8Array(0);

export async function loadTokenizer(file: string, opts: LoadTokenizerOptions = {}): Promise<TextTokenizer> {
  const label = path.basename(file);
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new BadInputError(`${label}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : `not valid JSON (${e instanceof Error ? e.message : String(e)})`}`);
  }
  const model = json.model as { type?: unknown; vocab?: unknown } | undefined;
  if (typeof model !== 'object' || model === null || typeof model.vocab !== 'object' || model.vocab === null || Array.isArray(model.vocab))
    throw new BadInputError(`${label}: no model.vocab object (only BPE tokenizers with a vocabulary map are supported)`);
  let native: Tokenizer;
  try {
    native = Tokenizer.fromString(JSON.stringify(json));
  } catch (e) {
    throw new BadInputError(`${label}: the tokenizers library rejects it (${String(e instanceof Error ? e.message : e).split('\n')[0]})`);
  }
  return new HfTokenizer(native, json, opts);
}

class HfTokenizer implements TextTokenizer {
  readonly vocabSize: number;
  readonly eosIds: readonly number[];
  readonly bosId: number | null;
  readonly addBos: boolean;
  readonly fim: FimTokens | null;
  private readonly bytes: Uint8Array[];
  private readonly special: Uint8Array;
  private readonly byContent = new Map<string, number>();
  /** Contents of every added token, longest first, for keeping them out of user text. */
  private readonly guarded: string[];

  constructor(
    private readonly native: Tokenizer,
    json: Record<string, unknown>,
    opts: LoadTokenizerOptions,
  ) {
    const vocab = (json.model as { vocab: Record<string, number> }).vocab;
    const added = ((json.added_tokens as AddedToken[] | undefined) ?? []).filter((t) => Number.isInteger(t.id) && typeof t.content === 'string');
    let size = 0;
    for (const id of Object.values(vocab)) size = Math.max(size, id + 1);
    for (const t of added) size = Math.max(size, t.id + 1);
    this.vocabSize = size;

    const spelling = spellingOf(json);
    this.bytes = new Array<Uint8Array>(size).fill(EMPTY);
    this.special = new Uint8Array(size);
    for (const [token, id] of Object.entries(vocab)) {
      this.byContent.set(token, id);
      const b = spelling === 'byte-level' ? byteLevelBytes(token) : sentencePieceBytes(token);
      this.bytes[id] = b ?? new TextEncoder().encode(token);
    }
    for (const t of added) {
      this.byContent.set(t.content, t.id);
      // Added tokens are matched in raw text, so a non-special one stands for its literal content.
      if (t.special) {
        this.special[t.id] = 1;
        this.bytes[t.id] = EMPTY;
      } else this.bytes[t.id] = new TextEncoder().encode(t.content);
    }
    this.guarded = added.map((t) => t.content).filter((c) => c.length > 1).sort((a, b) => b.length - a.length);

    const cfg = opts.tokenizerConfig ?? {};
    const named = (v: unknown) => (typeof v === 'string' ? this.tokenId(v) : typeof v === 'object' && v && 'content' in v ? this.tokenId(String((v as { content: unknown }).content)) : null);
    const eos = new Set(opts.eosTokenIds ?? []);
    const cfgEos = named(cfg.eos_token);
    if (cfgEos !== null) eos.add(cfgEos);
    for (const t of END_TOKENS) {
      const id = this.tokenId(t);
      if (id !== null) eos.add(id);
    }
    this.eosIds = [...eos];
    this.bosId = opts.bosTokenId ?? named(cfg.bos_token);
    this.addBos = cfg.add_bos_token === true && this.bosId !== null;
    this.fim = this.detectFim();
    // Qwen2.5's tokenizer.json flags its FIM and file tokens "special": false. For completion they are control
    // tokens whatever the flag says: they carry no text and generating one ends the completion.
    const control = [...this.eosIds, this.bosId, this.fim?.prefix, this.fim?.suffix, this.fim?.middle, this.fim?.pad, this.fim?.fileSep, this.fim?.repoName];
    for (const id of control)
      if (typeof id === 'number' && id >= 0 && id < size) {
        this.special[id] = 1;
        this.bytes[id] = EMPTY;
      }
  }

  private detectFim(): FimTokens | null {
    const id = (s: string) => this.tokenId(s);
    const qwen = [id('<|fim_prefix|>'), id('<|fim_suffix|>'), id('<|fim_middle|>')];
    if (qwen.every((x) => x !== null))
      return { style: 'qwen', prefix: qwen[0]!, suffix: qwen[1]!, middle: qwen[2]!, pad: id('<|fim_pad|>'), fileSep: id('<|file_sep|>'), repoName: id('<|repo_name|>') };
    const star = [id('<fim_prefix>'), id('<fim_suffix>'), id('<fim_middle>')];
    if (star.every((x) => x !== null))
      return { style: 'starcoder', prefix: star[0]!, suffix: star[1]!, middle: star[2]!, pad: id('<fim_pad>'), fileSep: id('<file_sep>'), repoName: id('<reponame>') };
    const llama = [id('▁<PRE>') ?? id('<PRE>'), id('▁<SUF>') ?? id('<SUF>'), id('▁<MID>') ?? id('<MID>')];
    if (llama.every((x) => x !== null)) return { style: 'codellama', prefix: llama[0]!, suffix: llama[1]!, middle: llama[2]!, pad: null, fileSep: null, repoName: null };
    return null;
  }

  async encode(text: string): Promise<number[]> {
    if (text === '') return [];
    const out: number[] = [];
    // Split around any added token's spelling; each such occurrence is encoded in two halves so the library cannot
    // match it as the control token.
    let rest = text;
    while (rest.length) {
      let at = -1;
      let hit = '';
      for (const g of this.guarded) {
        const i = rest.indexOf(g);
        if (i >= 0 && (at < 0 || i < at)) [at, hit] = [i, g];
      }
      if (at < 0) {
        out.push(...(await this.plain(rest)));
        break;
      }
      if (at > 0) out.push(...(await this.plain(rest.slice(0, at))));
      out.push(...(await this.plain(hit.slice(0, 1))), ...(await this.plain(hit.slice(1))));
      rest = rest.slice(at + hit.length);
    }
    return out;
  }

  private async plain(text: string): Promise<number[]> {
    const enc = await this.native.encode(text, null, { addSpecialTokens: false });
    return enc.getIds();
  }

  decode(ids: readonly number[], skipSpecial = true): string {
    const parts: Uint8Array[] = [];
    let n = 0;
    for (const id of ids) {
      const b = this.special[id] && !skipSpecial ? new TextEncoder().encode(this.contentOf(id)) : this.tokenBytes(id);
      parts.push(b);
      n += b.length;
    }
    const all = new Uint8Array(n);
    let o = 0;
    for (const p of parts) {
      all.set(p, o);
      o += p.length;
    }
    return new TextDecoder().decode(all);
  }

  private contentOf(id: number): string {
    for (const [c, i] of this.byContent) if (i === id) return c;
    return '';
  }

  tokenBytes(id: number): Uint8Array {
    if (!(id >= 0 && id < this.vocabSize)) throw new RangeError(`token id ${id} outside the tokenizer (${this.vocabSize})`);
    return this.bytes[id]!;
  }

  tokenId(content: string): number | null {
    return this.byContent.get(content) ?? null;
  }

  isSpecial(id: number): boolean {
    return this.special[id] === 1;
  }
}

/** Byte-level BPE unless the tokenizer is SentencePiece-style (Metaspace pre-tokenizer or ▁ replacement decoder). */
function spellingOf(json: Record<string, unknown>): 'byte-level' | 'sentencepiece' {
  const text = JSON.stringify([json.pre_tokenizer ?? null, json.decoder ?? null, json.normalizer ?? null]);
  if (text.includes('"ByteLevel"')) return 'byte-level';
  if (text.includes('Metaspace') || text.includes('\u2581') || text.includes('ByteFallback')) return 'sentencepiece';
  return 'byte-level';
}
