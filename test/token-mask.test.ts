/**
 * Allowed-token masks against a brute-force check of every token in the real Qwen2 vocabulary (151k tokens,
 * including partial-UTF-8, leading-space and identifier-crossing tokens such as `.length` and `foo(`).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { ensureFixtureModel } from '../engine/model/fixtures.js';
import { openModelDir } from '../engine/model/directory.js';
import { loadTokenizer } from '../engine/tokenizer/tokenizer.js';
import type { TextTokenizer } from '../engine/tokenizer/types.js';
import { VocabTrie } from '../engine/decode/mask/vocab-trie.js';
import { applyMask, isAllowed, isIdentifierByte, TokenMasks } from '../engine/decode/mask/token-mask.js';

let tok: TextTokenizer;
let trie: VocabTrie;
let masks: TokenMasks;
beforeAll(async () => {
  const m = openModelDir(ensureFixtureModel('qwen-vocab'));
  tok = await loadTokenizer(m.tokenizerFile, { tokenizerConfig: m.tokenizerConfig });
  trie = new VocabTrie((id) => tok.tokenBytes(id), tok.vocabSize);
  masks = new TokenMasks(trie);
});

const enc = new TextEncoder();
function startsWith(a: Uint8Array, b: Uint8Array): boolean {
  if (b.length > a.length) return false;
  for (let i = 0; i < b.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The definition, token by token. */
function bruteForce(names: string[], typed: string): Set<number> {
  const t = enc.encode(typed);
  const nb = names.filter((n) => n.startsWith(typed)).map((n) => enc.encode(n));
  const out = new Set<number>();
  for (let id = 0; id < tok.vocabSize; id++) {
    const b = tok.tokenBytes(id);
    if (b.length === 0) continue;
    const s = new Uint8Array(t.length + b.length);
    s.set(t);
    s.set(b, t.length);
    const ok = nb.some((n) => startsWith(n, s) || (startsWith(s, n) && s.length > n.length && !isIdentifierByte(s[n.length]!)));
    if (ok) out.add(id);
  }
  return out;
}

function allowedSet(bits: Uint32Array): Set<number> {
  const out = new Set<number>();
  for (let id = 0; id < tok.vocabSize; id++) if (isAllowed(bits, id)) out.add(id);
  return out;
}

const MEMBERS = ['length', 'lengthInBytes', 'push', 'pop', 'map', 'forEach', 'filter', 'indexOf', 'includes', 'size', 'set', 'get', 'has', 'then', 'toString', 'x', 'área', '$el', '_private'];

describe('token masks equal the brute-force definition on the Qwen2 vocabulary', () => {
  it.each([
    ['', MEMBERS],
    ['len', MEMBERS],
    ['length', MEMBERS], // complete (and a prefix of lengthInBytes)
    ['fo', MEMBERS],
    ['x', MEMBERS],
    ['á', MEMBERS], // a multi-byte identifier, typed partway
    ['', ['.length', '.size', '.push']], // the dot inside the constrained span
    ['', ['zzqxv']], // a name no token starts: only byte-wise prefixes
  ])('typed %j', (typed, names) => {
    const expected = bruteForce(names as string[], typed as string);
    const got = allowedSet(masks.allowed(names as string[], typed as string));
    expect([...got].filter((i) => !expected.has(i)).map((i) => tok.decode([i]))).toEqual([]);
    expect([...expected].filter((i) => !got.has(i)).map((i) => tok.decode([i]))).toEqual([]);
    expect(got.size).toBeGreaterThan(0);
  });

  // Qwen2's pre-tokenizer never merges letters with the punctuation after them (no `length(` token); identifiers
  // cross token boundaries only as punctuation-then-letters: `.length`, `(x`.
  it('allows `.length` for a dotted constraint, refuses longer, capitalised or spaced identifiers', () => {
    const bits = masks.allowed(MEMBERS, '');
    const texts = Array.from({ length: tok.vocabSize }, (_, i) => [i, tok.decode([i])] as const);
    const refused = texts.filter(([, t]) => /^(Length|lengthy|\slength|Push)$/.test(t));
    expect(refused.length).toBeGreaterThan(1);
    for (const [id, t] of refused) expect(isAllowed(bits, id), t).toBe(false);
    expect(isAllowed(bits, tok.tokenId('length')!)).toBe(true);
    const dotted = masks.allowed(['.length', '.size'], '');
    const id = (t: string) => tok.tokenId(t)!;
    expect(isAllowed(dotted, id('.length'))).toBe(true);
    expect(isAllowed(dotted, id('.'))).toBe(true);
    expect(isAllowed(dotted, id('.map'))).toBe(false);
  });

  it('caches per (names, typed) and applies to logits', () => {
    expect(masks.allowed(MEMBERS, 'le')).toBe(masks.allowed(MEMBERS, 'le'));
    const bits = masks.allowed(MEMBERS, 'pu');
    const logits = new Float32Array(tok.vocabSize).fill(1);
    const kept = applyMask(logits, bits);
    expect(kept).toBe(allowedSet(bits).size);
    for (let i = 0; i < logits.length; i++) expect(logits[i] === 1).toBe(isAllowed(bits, i));
  });
});
