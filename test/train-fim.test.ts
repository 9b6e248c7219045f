/**
 * The training recipe's fill-in-the-middle examples (fixtures/models/train/tokenize.mjs): never an empty middle (the
 * first recipe's blank-line middles taught the model to end at once after <|fim_middle|>), and context-level examples
 * that fit the window and have the shape of the server's prompts.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Tokenizer } from 'tokenizers';
import { describe, expect, it } from 'vitest';
// @ts-expect-error: a plain ES module of the training recipe, without types
import { fimExample, fimSplit, fineTuneRows, isDotSite, pickMiddle, rng, SPECIALS } from '../fixtures/models/train/tokenize.mjs';
import { embeddedModelDir } from '../engine/paths.js';

const source = [
  '// a file with blank lines',
  '',
  'export function area(shape) {',
  '',
  '  const size = shape.size;',
  '   ',
  '  return shape.width * shape.height + size.length;',
  '}',
  '',
  'const names = items.map((item) => item.name).filter(Boolean);',
  '',
].join('\n');

describe('training FIM examples', () => {
  it('fimSplit never draws an empty or blank middle', () => {
    const random = rng(3);
    for (let i = 0; i < 2000; i++) {
      const { pre, mid, suf } = fimSplit(source, random);
      expect(mid.trim().length, `draw ${i}`).toBeGreaterThan(0);
      expect(pre + mid + suf).toBe(source);
    }
  });

  const tok = Tokenizer.fromString(fs.readFileSync(path.join(embeddedModelDir(), 'tokenizer.json'), 'utf8'));
  const id = Object.fromEntries(SPECIALS.map((s: string) => [s, tok.tokenToId(s)!])) as Record<string, number>;
  const enc = async (text: string) => (text ? (await tok.encode(text, null, { addSpecialTokens: false })).getIds() : []);
  const encFile = async (text: string, p: string) => {
    const e = await tok.encode(text, null, { addSpecialTokens: false });
    return { text, path: p, ids: Uint16Array.from(e.getIds()), starts: Int32Array.from(e.getOffsets(), (o: number[]) => o[0]!) };
  };

  it('pickMiddle starts at a token boundary, at a member access when asked, and ends at a line end', async () => {
    const file = await encFile(source, 'src/area.js');
    const random = rng(5);
    for (let i = 0; i < 300; i++) {
      const m = pickMiddle(source, file.starts, random, { dotRate: i % 2 ? 1 : 0 })!;
      expect(m).not.toBeNull();
      expect(Array.from(file.starts)).toContain(m.start);
      expect(source.slice(m.start, m.end).trim().length).toBeGreaterThan(0);
      expect(m.end === source.length || source[m.end] === '\n').toBe(true);
      if (i % 2) expect(isDotSite(source, m.start)).toBe(true);
    }
  });

  it('fimExample fits its budget, in PSM or SPM, with the middle (and only it) marked for the FIM loss', async () => {
    const file = await encFile(source.repeat(20), 'src/area.js');
    const random = rng(11);
    let spm = 0;
    for (let i = 0; i < 200; i++) {
      const maxTokens = 48 + (i % 5) * 100;
      const ex = await fimExample(file, enc, id, random, { maxTokens, spmRate: 0.5 });
      if (!ex) continue;
      const t: number[] = ex.tokens;
      expect(t.length).toBeLessThanOrEqual(maxTokens);
      expect(t[0]).toBe(id['<|file_sep|>']);
      expect(t.at(-1)).toBe(id['<|endoftext|>']);
      for (const s of ['<|fim_prefix|>', '<|fim_suffix|>', '<|fim_middle|>']) expect(t.filter((x) => x === id[s]).length).toBe(1);
      const [p, s, m] = [t.indexOf(id['<|fim_prefix|>']!), t.indexOf(id['<|fim_suffix|>']!), t.indexOf(id['<|fim_middle|>']!)];
      expect(ex.layout).toBe(s < p ? 'spm' : 'psm');
      if (ex.layout === 'spm') spm++;
      expect(m).toBe(t.length - ex.mask.filter((x: number) => x === 2).length - 1);
      expect(m).toBeGreaterThan(Math.max(p, s));
      // the middle and its <|endoftext|> are class 2, at least one middle token; the control tokens class 0
      expect(Array.from(ex.mask.slice(m + 1))).toEqual(t.slice(m + 1).map(() => 2));
      expect(t.length - m - 1).toBeGreaterThanOrEqual(2);
      for (const at of [0, p, s, m]) expect(ex.mask[at]).toBe(0);
      // the prefix is the file's own tokens, ending right where the middle starts
      const prefix = ex.layout === 'spm' ? t.slice(p + 1, m) : t.slice(p + 1, s);
      const text = await tok.decode(prefix, false);
      const middle = await tok.decode(t.slice(m + 1, -1), false);
      expect(file.text).toContain(text + middle);
    }
    expect(spm).toBeGreaterThan(40);
    expect(spm).toBeLessThan(160);
  });

  it('fimExample in the joined layout: suffix first, the prefix running straight into the middle and <|endoftext|>', async () => {
    const file = await encFile(source.repeat(20), 'src/area.js');
    const random = rng(5);
    let joined = 0;
    for (let i = 0; i < 100; i++) {
      const ex = await fimExample(file, enc, id, random, { maxTokens: 300, joinedRate: 0.8 });
      if (!ex || ex.layout !== 'spm-joined') continue;
      joined++;
      const t: number[] = ex.tokens;
      expect(t.includes(id['<|fim_middle|>']!)).toBe(false);
      const [s, p] = [t.indexOf(id['<|fim_suffix|>']!), t.indexOf(id['<|fim_prefix|>']!)];
      expect(s).toBeGreaterThan(0);
      expect(p).toBeGreaterThan(s);
      const middleLen = ex.mask.filter((x: number) => x === 2).length - 1;
      expect(middleLen).toBeGreaterThanOrEqual(1);
      const m = t.length - 1 - middleLen; // where the middle starts
      expect(Array.from(ex.mask.slice(m))).toEqual(t.slice(m).map(() => 2));
      expect(ex.mask[m - 1]).toBe(p === m - 1 ? 0 : 1); // the prefix's last token is plain text (or the marker, if the prefix is empty)
      // prefix + middle is the file's text, up to the middle's end, and the middle ends at a line end (where the suffix starts)
      const joinedText = await tok.decode(t.slice(p + 1, -1), false);
      const suffix = await tok.decode(t.slice(s + 1, p), false);
      expect(file.text).toContain(joinedText + suffix);
    }
    expect(joined).toBeGreaterThan(60);
  });

  it('fineTuneRows packs rows of exactly seq tokens with FIM middles in them', async () => {
    const files = [await encFile(source.repeat(10), 'a.js'), await encFile(source.repeat(3), 'b.js')];
    const r = await fineTuneRows(files, enc, id, rng(2), { rows: 12, seq: 256, plainRate: 0.25 });
    expect(r.ids.length).toBe(12 * 256);
    expect(r.mask.length).toBe(12 * 256);
    expect(r.fimExamples).toBeGreaterThan(0);
    expect(r.mask.filter((x: number) => x === 2).length).toBe(r.middleTokens);
    // every <|fim_middle|> is followed by a middle token marked 2
    for (let i = 0; i + 1 < r.ids.length; i++) if (r.ids[i] === id['<|fim_middle|>']) expect(r.mask[i + 1]).toBe(2);
  });
});
