/**
 * The bracket discipline monitor: a suggestion never closes what it did not open (nor the enclosing block the file
 * closes below), never ends a line inside a one-line string; checked per sampled token, masked after a refusal.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BracketDisciplineMonitor, BracketTokens } from '../engine/monitors/bracket-discipline.js';
import { EndingTokens, LineEndMonitor } from '../engine/monitors/line-end.js';
import { endsInCode, knownSyntax } from '../engine/postprocess/bracket-lexer.js';
import { isAllowed } from '../engine/decode/mask/token-mask.js';
import type { TextTokenizer } from '../engine/tokenizer/types.js';
import { Engine } from '../engine/engine.js';
import { ensureFixtureModel } from '../engine/model/fixtures.js';
import type { LogitsProcessor } from '../engine/decode/logits-processor.js';

/** A vocabulary of the given spellings, one token each. */
function vocab(words: string[]): TextTokenizer {
  const enc = new TextEncoder();
  return {
    vocabSize: words.length,
    encode: async () => [],
    decode: (ids) => ids.map((i) => words[i]).join(''),
    tokenBytes: (id) => enc.encode(words[id]!),
    tokenId: (c) => (words.includes(c) ? words.indexOf(c) : null),
    isSpecial: () => false,
    eosIds: [],
    bosId: null,
    addBos: false,
    fim: null,
  };
}

const WORDS = ['x', ')', ']', '}', ');', '\n', '"', "'", ' + 1', '(', '[', '`', '/\\)/', '})'];
const tok = vocab(WORDS);
const tokens = new BracketTokens(tok);
const id = (w: string) => WORDS.indexOf(w);
const ts = knownSyntax('a.ts')!;

/** Whether the monitor refuses `word` after the generated `text`, at a cursor between `prefix` and `suffix`. */
function refuses(prefix: string, suffix: string, text: string, word: string): boolean {
  const m = new BracketDisciplineMonitor(prefix, suffix, ts, tokens);
  return m.reject(id(word), tok.tokenBytes(id(word)), { step: 0, tokens: [], text });
}

describe('bracket discipline: what a token may close', () => {
  it('refuses a closer that closes nothing, or the wrong bracket', () => {
    expect(refuses('const a = 1;\n', '\n', 'f(x', ']')).toBe(true); // `(` is open, not `[`
    expect(refuses('const a = 1;\n', '\n', 'f(x', ')')).toBe(false);
    expect(refuses('const a = 1;\n', '\n', 'x', ')')).toBe(true); // nothing open
    expect(refuses('const a = 1;\n', '\n', 'f([x', '})')).toBe(true);
  });

  it('refuses the enclosing block the file closes below, allows the auto-inserted closer on the line', () => {
    const fn = 'function f(a: number) {\n  const b = ';
    expect(refuses(fn, ';\n}\n', 'a', '}')).toBe(true); // the file's own `}` would then close nothing
    expect(refuses('g(', ')\n', 'x', ')')).toBe(false); // replaces the editor's `)` after the cursor
    expect(refuses('g(', ')\n', 'x', ');')).toBe(false);
    // opened on the cursor's line: what reads as its closer below may be another's (the line's rest was deleted)
    expect(refuses(fn.replace('const b = ', 'const b = g('), '\n  );\n}\n', 'a', ')')).toBe(false);
    expect(refuses('const s = `a ${x.', '\n  b ${y}`;\n', 'y', '}')).toBe(false);
    // a bracket the suffix does not close at all may be closed (the user is writing the end of it)
    expect(refuses('g(', '\n', 'x', ')')).toBe(false);
  });

  it('refuses a line end inside a one-line string, unless the line rest closes the prefix\'s string', () => {
    expect(refuses('const s = ', ';\n', '"abc', '\n')).toBe(true);
    expect(refuses('const s = ', ';\n', '"abc"', '\n')).toBe(false);
    expect(refuses('const s = "', '";\n', 'abc', '\n')).toBe(false);
    expect(refuses('const s = ', ';\n', '`abc', '\n')).toBe(false); // templates span lines
  });

  it('reads brackets in strings, comments and regular expressions as text', () => {
    expect(refuses('const s = ', ';\n', '"(', '"')).toBe(false);
    expect(refuses('const s = ', ';\n', '"', ')')).toBe(false); // inside the string
    expect(refuses('const r = s.replace(', ');\n', '', '/\\)/')).toBe(false);
    expect(refuses('// f(\n', '\n', 'x', ')')).toBe(true); // the comment's `(` opened nothing
  });

  it('an escape or a comment mark at the end of the text is lexed together with the token', () => {
    expect(refuses('const s = ', ';\n', '"a\\', '"')).toBe(false); // `\"` stays in the string
    expect(refuses('const s = ', ';\n', '"a\\', '\n')).toBe(false); // escaped line end: no string ended
  });

  it('after a refusal, allowed() masks exactly the refused tokens of the vocabulary', () => {
    const m = new BracketDisciplineMonitor('const a = 1;\n', '\n', ts, tokens);
    const state = { step: 1, tokens: [], text: 'f(x' };
    expect(m.allowed(state)).toBeNull(); // not before a refusal: reject() judges the sampled token
    expect(m.allowed({ ...state, strict: true })).toBeNull(); // another monitor's refusal: not this one's business
    expect(m.reject(id(']'), tok.tokenBytes(id(']')), state)).toBe(true);
    const mask = m.allowed({ ...state, strict: true })!;
    const allowed = WORDS.filter((w) => isAllowed(mask, id(w)));
    expect(allowed.sort()).toEqual(['x', ')', ');', '\n', '"', "'", ' + 1', '(', '[', '`', '/\\)/'].sort());
    expect(WORDS.filter((w) => !isAllowed(mask, id(w))).sort()).toEqual([']', '}', '})'].sort());
  });
});

/** Whether `text` (plain code, no strings) has a closer with nothing of its own open before it. */
function closesNothing(text: string): boolean {
  let depth = 0;
  for (const c of text) {
    if ('([{'.includes(c)) depth++;
    else if (')]}'.includes(c) && --depth < 0) return true;
  }
  return false;
}

describe('line-end monitor: a one-line suggestion ends only where its line parses with the rest of the file', () => {
  const words = ['a', ',', '\n', ';\n', '<eos>'];
  const t: TextTokenizer = { ...vocab(words), isSpecial: (i) => i === 4, eosIds: [4], tokenBytes: (i) => new TextEncoder().encode(i === 4 ? '' : words[i]!) };
  const endings = new EndingTokens(t);

  it('refuses an end whose line does not fit, at most a few times, and masks every ending token after a refusal', () => {
    const asked: string[] = [];
    const m = new LineEndMonitor((text) => (asked.push(text), text.endsWith(',')), endings);
    const state = { step: 3, tokens: [], text: 'a' };
    expect(m.reject(0, t.tokenBytes(0), state)).toBe(false); // not an end: not judged
    expect(asked).toEqual([]);
    expect(m.reject(2, t.tokenBytes(2), state)).toBe(true); // `a` then the line break: does not fit
    expect(m.reject(3, t.tokenBytes(3), state)).toBe(true); // `a;` neither
    const mask = m.allowed({ ...state, strict: true })!;
    expect(words.filter((_, i) => isAllowed(mask, i))).toEqual(['a', ',']);
    expect(m.reject(2, t.tokenBytes(2), { ...state, text: 'a,' })).toBe(false); // fits
    expect(m.reject(4, t.tokenBytes(4), state)).toBe(true); // end of sequence is an end too
    expect(asked).toEqual(['a', 'a;', 'a,', 'a']);
    expect(m.reject(2, t.tokenBytes(2), state)).toBe(false); // three refusals spent: it may end now
  });

  it('a line break before anything is written is no end; a checker that throws lets the end through', () => {
    const m = new LineEndMonitor(() => false, endings);
    expect(m.reject(2, t.tokenBytes(2), { step: 0, tokens: [], text: '' })).toBe(false);
    const broken = new LineEndMonitor(() => {
      throw new Error('parser crashed');
    }, endings);
    expect(broken.reject(2, t.tokenBytes(2), { step: 1, tokens: [], text: 'a' })).toBe(false);
    expect(broken.stats.errors).toBe(1);
  });
});

describe('in the decode loop (tiny random model, TypeScript parser)', () => {
  const workspace = path.resolve(import.meta.dirname, '../fixtures/repos/monitor-cases');
  let engine: Engine;
  beforeAll(async () => {
    engine = await Engine.load({ model: ensureFixtureModel('tiny'), threads: 2 });
  });
  afterAll(() => engine?.dispose());

  /** A processor that adds `boost` to the logit of every token whose bytes pass `pick`, as an eager model would. */
  function eager(pick: (bytes: Uint8Array) => boolean, boost: number): LogitsProcessor {
    const ids: number[] = [];
    for (let i = 0; i < engine.tokenizer.vocabSize; i++) if (pick(engine.tokenizer.tokenBytes(i))) ids.push(i);
    return {
      process(logits) {
        for (const i of ids) logits[i] = logits[i]! + boost;
        return false;
      },
    };
  }

  it('never writes a closer of nothing, whatever the model wants; without monitors it does', async () => {
    // a model that wants to close the enclosing function (`}` and `)` tokens boosted)
    const closer = () => eager((b) => /^[)}\]]/.test(new TextDecoder().decode(b)), 50);
    const prefix = `export function f(a: number) {\n  const b = a + `;
    const req = { prefix, suffix: ';\n  return b;\n}\n', filePath: 'src/site.ts', workspace, maxTokens: 6, stop: 'line' as const, temperature: 1 };
    for (let seed = 0; seed < 3; seed++) {
      const on = await engine.complete({ ...req, seed, processors: [closer()], monitorKinds: { 'scope-names': false } });
      expect(closesNothing(on.raw)).toBe(false);
    }
    const off = await engine.complete({ ...req, monitors: false, processors: [closer()] });
    expect(closesNothing(off.raw)).toBe(true);
  });

  it('a member that would end the line where the next line needs a comma is not the end', async () => {
    const eagerEnd = eager((b) => b.includes(0x0a), 30);
    // `a: acc.balance` + `\n    b: 1,`: no comma, no parse (object literals get no automatic semicolons); the file
    // without the cursor's line parses
    const prefix = `import { Account } from './model.js';\nexport function f(acc: Account) {\n  const o = {\n    a: acc.`;
    const req = { prefix, suffix: `\n    b: 1,\n  };\n  return o;\n}\n`, filePath: 'src/site.ts', workspace, maxTokens: 10, stop: 'line' as const, processors: [eagerEnd], verify: false };
    const off = await engine.complete({ ...req, monitorKinds: { 'line-end': false } });
    const on = await engine.complete(req);
    expect(off.raw).toMatch(/^\w+$/); // the member, then the line break
    expect(on.raw.startsWith(off.raw)).toBe(true);
    expect(on.raw.length).toBeGreaterThan(off.raw.length); // refused there: the model went on writing the line
  });
});

describe('endsInCode: the prefix alone says whether its end is in code', () => {
  const ts = knownSyntax('a.ts')!;
  it.each([
    ['const s = `id ${d[acc.', true],
    ['const s = `id ${d[acc.x]} and ', false],
    ['const s = "abc', false],
    ['const s = "abc" + acc.', true],
    ['// acc.', false],
    ['/* acc.', false],
    ['/* x */ acc.', true],
    ["const r = /a'b/.test(s) && acc.", true],
  ])('%j: %s', (prefix, code) => {
    expect(endsInCode(prefix, ts)).toBe(code);
  });
});
