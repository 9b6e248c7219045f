/**
 * Check before showing (engine/verify): the search policy with a scripted checker and decoder, and the engine's
 * verification on the TypeScript checker with a random model whose text a test processor scripts.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sensibleCuts, verifySuggestion, type Candidate, type VerifySearch } from '../engine/verify/verify.js';
import { diagnosticKind } from '../engine/verify/diagnostics.js';
import { Engine } from '../engine/engine.js';
import { ensureFixtureModel } from '../engine/model/fixtures.js';
import { TypeScriptOracle } from '../engine/analysis/ts-oracle.js';
import { commonDiagnostics, newDiagnostics, parseDiagnostics } from '../engine/verify/diagnostics.js';
import type { LogitsProcessor } from '../engine/decode/logits-processor.js';

const c = (text: string): Candidate => ({ text, replace: 0 });

/** A search whose checker calls every text containing "bad" dirty; alternatives and prefixes as given. */
function search(o: { alternatives?: string[]; prefixes?: string[]; want?: number; budgetMs?: number; added?: VerifySearch['added'] }): VerifySearch & { decoded: number } {
  const alts = [...(o.alternatives ?? [])];
  const s = {
    decoded: 0,
    budgetMs: o.budgetMs ?? 10_000,
    want: o.want ?? 1,
    maxAlternatives: 4,
    added: o.added ?? ((x: Candidate) => (x.text.includes('bad') ? [2304] : [])),
    alternative: async () => {
      const next = alts.shift();
      if (next === undefined) return null;
      s.decoded++;
      return c(next);
    },
    prefixes: () => (o.prefixes ?? []).map(c),
  };
  return s;
}

describe('verifySuggestion: the order candidates are tried in', () => {
  it('a clean suggestion is shown after one check, nothing decoded', async () => {
    const s = search({ alternatives: ['x'] });
    const v = await verifySuggestion(c('good'), s);
    expect(v.shown.text).toBe('good');
    expect(v.report).toMatchObject({ status: 'clean', checked: 1, chosen: 0, added: 0 });
    expect(s.decoded).toBe(0);
  });

  it('a dirty one gives way to the first clean alternative, shown before the clean prefix found first', async () => {
    const v = await verifySuggestion(c('bad one'), search({ alternatives: ['bad two', 'fine', 'also fine'], prefixes: ['prefix'] }));
    expect(v.shown.text).toBe('fine');
    // judged: the suggestion, the prefix (the fallback), 'bad two', 'fine'
    expect(v.report).toMatchObject({ status: 'alternative', chosen: 3, checked: 4, added: 1 });
  });

  it('a prefix that leaves its line open is tried repaired', async () => {
    const open = (x: Candidate) => (/bad|\((?!.*\))/.test(x.text) ? [1005] : []);
    const s = { ...search({ prefixes: ['f(a'], added: open }), repair: (x: Candidate) => (x.text.includes('(') ? { ...x, text: `${x.text})` } : null) };
    const v = await verifySuggestion(c('f(a, bad'), s);
    expect(v.shown.text).toBe('f(a)');
    expect(v.report.status).toBe('prefix');
  });

  it('the clean prefix is found before alternatives are decoded: a slow decode cannot leave the original shown', async () => {
    const s = search({ alternatives: ['fine'], prefixes: ['ok'], budgetMs: 50 });
    const slow = { ...s, alternative: async (ms: number) => (await new Promise((r) => setTimeout(r, ms + 5)), null) };
    const v = await verifySuggestion(c('bad'), slow);
    expect(v.shown.text).toBe('ok');
    expect(v.report.status).toBe('prefix');
  });

  it('then the longest clean prefix; else the original, said to be dirty', async () => {
    const p = await verifySuggestion(c('x.bad(1)'), search({ alternatives: ['bad'], prefixes: ['x.bad', 'x'] }));
    expect(p.shown.text).toBe('x');
    expect(p.report.status).toBe('prefix');
    const d = await verifySuggestion(c('bad'), search({ alternatives: ['bad 2'], prefixes: ['bad 3'] }));
    expect(d.shown.text).toBe('bad');
    expect(d.report).toMatchObject({ status: 'dirty', chosen: -1 });
  });

  it('collects distinct clean candidates when more are wanted (a trailing `;` is no new candidate)', async () => {
    const v = await verifySuggestion(c('a;'), search({ alternatives: ['a', 'bad', 'b', 'c', 'd'], want: 3 }));
    expect(v.clean.map((x) => x.text)).toEqual(['a;', 'b', 'c']);
    expect(v.shown.text).toBe('a;');
  });

  it('a checker that throws leaves the suggestion unverified, with the error', async () => {
    const v = await verifySuggestion(
      c('text'),
      search({
        added: () => {
          throw new Error('checker crashed');
        },
      }),
    );
    expect(v.shown.text).toBe('text');
    expect(v.report).toMatchObject({ status: 'unverified', error: 'checker crashed' });
  });

  it('no alternative is decoded once the budget is spent', async () => {
    const slow: VerifySearch['added'] = async (x) => {
      await new Promise((r) => setTimeout(r, 30));
      return x.text.includes('bad') ? [1005] : [];
    };
    const s = search({ alternatives: ['fine'], prefixes: ['ok'], budgetMs: 20, added: slow });
    const v = await verifySuggestion(c('bad'), s);
    expect(v.shown.text).toBe('bad');
    expect(v.report).toMatchObject({ status: 'dirty', exhausted: true, checked: 1 });
    expect(s.decoded).toBe(0);
  });
});

describe('verifySuggestion: repair before searching', () => {
  it('a dirty suggestion whose repair is clean is shown repaired, nothing decoded', async () => {
    const s = { ...search({ alternatives: ['fine'] }), repair: (x: Candidate) => ({ ...x, text: x.text.replace('bad', 'ok') }) };
    const v = await verifySuggestion(c('bad('), s);
    expect(v.shown.text).toBe('ok(');
    expect(v.report.status).toBe('repaired');
    expect(s.decoded).toBe(0);
  });

  it('a repair that is still dirty gives way to the alternatives', async () => {
    const s = { ...search({ alternatives: ['fine'] }), repair: (x: Candidate) => ({ ...x, text: `${x.text})` }) };
    const v = await verifySuggestion(c('bad('), s);
    expect(v.shown.text).toBe('fine');
    expect(v.report.status).toBe('alternative');
  });
});

describe('diagnostics as the verifier compares them', () => {
  const d = (code: number, message = 'm') => ({ code, message });
  it('common keeps what both baselines have, as multisets', () => {
    expect(commonDiagnostics([d(1), d(1), d(2), d(3)], [d(1), d(3), d(3)])).toEqual([d(1), d(3)]);
  });

  it('the parser alone reports syntax errors, and no type errors', () => {
    expect(parseDiagnostics('a.ts', 'const n: number = "x";\n')).toEqual([]);
    expect(parseDiagnostics('a.ts', 'const n = (1 + ;\n').map((x) => x.code)).toContain(1109);
  });
});

describe('sensibleCuts', () => {
  it('after names and closers, never inside a name or after an operator, comma or opener', () => {
    const text = 'foo.bar(a, b) + baz';
    expect(sensibleCuts(text).map((i) => text.slice(0, i))).toEqual(['foo.bar(a, b)', 'foo.bar(a, b', 'foo.bar(a', 'foo.bar', 'foo']);
  });
});

describe('diagnosticKind', () => {
  it('groups codes as the evaluation reports them', () => {
    expect([1005, 2554, 2349, 2304, 2339, 2345, 2322].map(diagnosticKind)).toEqual(['syntax', 'arity', 'not-callable', 'unknown-name', 'member', 'argument-type', 'other']);
  });
});

const workspace = path.resolve(import.meta.dirname, '../fixtures/repos/monitor-cases');
const FILE = 'src/site.ts';

/** Writes `text` as soon as the healed `.` is re-spelled: the model's own tokens follow it. */
function scripted(text: string): LogitsProcessor {
  return { forced: (state) => (state.text === '.' ? text : null) };
}

describe('the engine checks before it shows (tiny random model, TypeScript checker)', () => {
  let engine: Engine;
  let oracle: TypeScriptOracle;
  beforeAll(async () => {
    engine = await Engine.load({ model: ensureFixtureModel('tiny'), threads: 2 });
    oracle = new TypeScriptOracle(workspace);
  });
  afterAll(() => {
    engine?.dispose();
    oracle?.dispose();
  });

  const prefix = `import { Account } from './model.js';\nexport function f(acc: Account) {\n  const r = acc.`;
  const suffix = `\n  return r;\n}\n`;
  const adds = (text: string) => newDiagnostics(oracle.diagnostics(FILE, prefix + suffix), oracle.diagnostics(FILE, prefix + text + suffix));

  it('a suggestion naming an unknown name is cut back to a clean prefix (TS2304 never shown)', async () => {
    const req = { prefix, suffix, filePath: FILE, workspace, maxTokens: 12, stop: 'line' as const, processors: [scripted('balance + nope')] };
    const off = await engine.complete({ ...req, verify: false });
    expect(off.text.startsWith('balance + nope')).toBe(true);
    expect(adds(off.text).map((d) => d.code)).toContain(2304);
    expect(off.verify.status).toBe('off');
    const on = await engine.complete({ ...req, verifyMs: 10_000 });
    expect(on.verify.added).toBeGreaterThan(0);
    expect(['alternative', 'prefix']).toContain(on.verify.status);
    expect(on.text.startsWith('balance')).toBe(true);
    expect(adds(on.text)).toEqual([]);
  });

  it('only what the suggestion adds counts: errors already in the file do not make it dirty', async () => {
    const broken = suffix + `const bad: number = 'x';\n`;
    const r = await engine.complete({ prefix, suffix: broken, filePath: FILE, workspace, maxTokens: 4, stop: 'line', processors: [scripted('balance;')], verifyMs: 10_000 });
    expect(r.text).toBe('balance;');
    expect(r.verify).toMatchObject({ status: 'clean', chosen: 0, added: 0 });
  });

  it('what removing the cursor\'s line breaks does not excuse a suggestion (a block that swallows the `else`)', async () => {
    const head = `import { Account } from './model.js';\nexport function f(acc: Account) {\n  let m = 0;\n  if (acc.balance > 1) m = 1;\n  else if (acc.`;
    const rest = `\n    m = 2;\n  else m = 3;\n  return m;\n}\n`;
    const r = await engine.complete({ prefix: head, suffix: rest, filePath: FILE, workspace, maxTokens: 6, stop: 'line', processors: [scripted('balance) {')], verifyMs: 10_000 });
    expect(r.raw.startsWith('balance) {')).toBe(true);
    expect(r.verify.added).toBeGreaterThan(0);
    expect(r.text).not.toContain('{');
    const doc = head + r.text + rest;
    expect(oracle.diagnostics(FILE, doc).filter((d) => d.code === 1128)).toEqual([]);
  });

  it('a suggestion that closes on its line the call the lines below go on with is not clean: cut after the opener', async () => {
    // the line was `acc.deposit(` and its argument follows below; without the line, the file has the same errors
    const head = `import { Account } from './model.js';\nexport function f(acc: Account) {\n  acc.`;
    const rest = `\n    acc.balance,\n  );\n}\n`;
    const r = await engine.complete({ prefix: head, suffix: rest, filePath: FILE, workspace, maxTokens: 6, stop: 'line', processors: [scripted('deposit(1);')], verifyMs: 10_000 });
    expect(r.raw.startsWith('deposit(1);')).toBe(true);
    expect(r.verify.added).toBeGreaterThan(0);
    expect(r.verify.status).toBe('prefix');
    expect(r.text).toBe('deposit(');
    expect(oracle.diagnostics(FILE, head + r.text + rest)).toEqual([]);
  });

  it('a suggestion that leaves its line open is repaired with the closers, no decode', async () => {
    const head = `import { Account } from './model.js';\nexport function f(acc: Account) {\n  return \`has \${acc.`;
    const r = await engine.complete({ prefix: head, suffix: `\n}\n`, filePath: FILE, workspace, maxTokens: 3, stop: 'line', processors: [scripted('balance')], verifyMs: 10_000 });
    expect(r.raw.startsWith('balance')).toBe(true);
    expect(r.verify.status).toBe('repaired');
    expect(r.text.startsWith('balance}`')).toBe(true);
    expect(oracle.diagnostics(FILE, head + r.text + `\n}\n`)).toEqual([]);
  });

  it('a file no checker knows is not verified, and decodes as before', async () => {
    const r = await engine.complete({ prefix: 'notes about acc.', suffix: '\n', filePath: 'notes.txt', workspace, maxTokens: 4, stop: 'line' });
    expect(r.verify.status).toBe('off');
  });
});
