/**
 * The generic LSP oracle: pyright (shipped as an npm dependency) on a small Python repository, then the failure
 * modes of a language server (crash, hang, missing executable) with a fake server, and decoding under monitors
 * through pyright with a random-weight model.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Analyses } from '../engine/analysis/analyses.js';
import { defaultLanguageServers, parseLanguageServerSpec, typescriptNativeServer } from '../engine/analysis/language-servers.js';
import { TypeScriptOracle } from '../engine/analysis/ts-oracle.js';
import { LspOracle, type LanguageServerConfig } from '../engine/analysis/lsp-oracle.js';
import { shapeOfSignatures } from '../engine/analysis/oracle.js';
import { Engine } from '../engine/engine.js';
import { ensureFixtureModel } from '../engine/model/fixtures.js';

const workspace = path.resolve(import.meta.dirname, '../fixtures/repos/python-shapes');
const FAKE = path.resolve(import.meta.dirname, 'fixtures/fake-language-server.mjs');
const HEADER = 'from shapes.accounts import Account, Transaction, total\nimport os\n\nacc = Account("a")\n';
const pyright = defaultLanguageServers().python!;

describe('pyright through the LSP oracle', () => {
  let oracle: LspOracle;
  beforeAll(() => {
    oracle = new LspOracle(workspace, pyright);
  });
  afterAll(() => oracle?.dispose());
  const members = (code: string) => oracle.members('main.py', HEADER + code + '\n', (HEADER + code).length);
  const shape = (code: string) => oracle.callShape('main.py', HEADER + code + '\n', (HEADER + code).length);

  it('lists the members of a cross-module class, a builtin and a module', async () => {
    const acc = await members('acc.');
    expect(acc).toEqual(expect.arrayContaining(['balance', 'deposit', 'history', 'owner', 'statement', 'transfer']));
    expect(acc).not.toContain('withdraw');
    expect(await members('acc.owner.')).toEqual(expect.arrayContaining(['upper', 'startswith', 'join']));
    expect(await members('acc.history[0].')).toEqual(expect.arrayContaining(['amount', 'memo']));
    expect(await members('os.path.')).toEqual(expect.arrayContaining(['join', 'dirname']));
  });

  it('gives call shapes: defaults, keyword-only, *args', async () => {
    expect(await shape('acc.deposit(')).toEqual({ minArgs: 1, maxArgs: 2 });
    expect(await shape('acc.transfer(')).toEqual({ minArgs: 3, maxArgs: 3 });
    expect(await shape('total(')).toEqual({ minArgs: 0, maxArgs: Infinity });
    expect(await shape('Transaction(')).toEqual({ minArgs: 1, maxArgs: 2 });
  });

  it('has no opinion where there is no member access', async () => {
    expect(await members('x = 1 + ')).toBeNull();
  });
});

describe('Analyses: the tree-sitter gate before the oracle', () => {
  it('does not ask the language server inside strings and comments', async () => {
    const analyses = new Analyses();
    try {
      const a = analyses.for(path.join(workspace, 'main.py'), workspace)!;
      expect(a.oracle.name).toBe('lsp:pyright');
      const code = HEADER + 'acc.';
      expect(await a.oracle.members('main.py', code + '\n', code.length)).toContain('deposit');
      const comment = HEADER + '# acc.';
      expect(a.isCode(comment + '\n', comment.length)).toBe(false);
      expect(await a.oracle.members('main.py', comment + '\n', comment.length)).toBeNull();
      const str = HEADER + 'print("acc.';
      expect(await a.oracle.members('main.py', str + '")\n', str.length)).toBeNull();
      // unknown languages: no analysis, plain decoding
      expect(analyses.applies('notes.cobol')).toBe(false);
      expect(analyses.for(path.join(workspace, 'notes.cobol'), workspace)).toBeNull();
    } finally {
      await analyses.dispose();
    }
  });
});

describe('a language server that misbehaves', () => {
  const fake = (mode: string, extra: Partial<LanguageServerConfig> = {}, counter?: string): LanguageServerConfig => ({
    languageId: 'fake',
    extensions: ['.fake'],
    command: [process.execPath, FAKE, mode, ...(counter ? [counter] : [])],
    timeoutMs: 300,
    startupTimeoutMs: 10_000,
    restartBackoffMs: 50,
    ...extra,
  });
  const logs: string[] = [];
  const log = (m: string) => logs.push(m);

  it('answers through a well-behaved fake server (snippets dropped, shapes parsed)', async () => {
    const o = new LspOracle(os.tmpdir(), fake('ok'), log);
    try {
      expect(await o.members('a.fake', 'x.', 2)).toEqual(['alpha', 'beta', 'life1']);
      expect(await o.callShape('a.fake', 'f(', 2)).toEqual({ minArgs: 1, maxArgs: 2 });
    } finally {
      await o.dispose();
    }
  });

  it('crashes: the question fails, the server is down for its backoff, then restarts and answers', async () => {
    const counter = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'mgd-fake-')), 'lives');
    const o = new LspOracle(os.tmpdir(), fake('crash-once', {}, counter), log);
    try {
      await expect(o.members('a.fake', 'x.', 2)).rejects.toThrow(/exited/);
      await expect(o.members('a.fake', 'x.', 2)).rejects.toThrow(/is down/);
      await new Promise((r) => setTimeout(r, 120));
      expect(await o.members('a.fake', 'x.', 2)).toContain('life2');
      expect(logs.some((l) => /completing without its analysis/.test(l))).toBe(true);
    } finally {
      await o.dispose();
    }
  });

  it('hangs: each question times out, and two in a row restart it', async () => {
    const o = new LspOracle(os.tmpdir(), fake('hang'), log);
    try {
      // the first question gets the startup timeout: short, but long enough for the fake to start on a loaded
      // machine (a start that times out is a crash, not a hang, and the next question would find it down)
      (o.config as LanguageServerConfig).startupTimeoutMs = 2000;
      await expect(o.members('a.fake', 'x.', 2)).rejects.toThrow(/did not answer/);
      await expect(o.callShape('a.fake', 'f(', 2)).rejects.toThrow(/did not answer/);
      await expect(o.members('a.fake', 'x.', 2)).rejects.toThrow(/is down/);
      expect(logs.some((l) => /did not answer twice/.test(l))).toBe(true);
    } finally {
      await o.dispose();
    }
  });

  it('answers garbage (wrong types, junk on its stdout): no constraint or an error, never a crash, then answers again', async () => {
    for (const mode of ['garbage', 'junk']) {
      const o = new LspOracle(os.tmpdir(), fake(mode), log);
      try {
        for (let i = 0; i < 8; i++) {
          const members = await o.members('a.fake', 'x.', 2).catch(() => null);
          if (members !== null) expect(members.every((m) => typeof m === 'string' && m.length > 0), mode).toBe(true);
          const shape = await o.callShape('a.fake', 'f(', 2).catch(() => null);
          if (shape !== null) expect(Number.isInteger(shape.minArgs) && shape.minArgs <= shape.maxArgs, mode).toBe(true);
        }
      } finally {
        await o.dispose();
      }
    }
  });

  it('cannot start (missing executable, or exits before initialize): one clear error, no crash', async () => {
    const missing = new LspOracle(os.tmpdir(), { ...fake('ok'), command: ['/nonexistent/language-server'] }, log);
    await expect(missing.members('a.fake', 'x.', 2)).rejects.toThrow(/ENOENT|could not start|exited/);
    await missing.dispose();
    const early = new LspOracle(os.tmpdir(), fake('crash-init'), log);
    await expect(early.members('a.fake', 'x.', 2)).rejects.toThrow(/exited/);
    await early.dispose();
  });

  it('a completion decodes on, unmonitored, and says so, when the server hangs', async () => {
    const engine = await Engine.load({ model: ensureFixtureModel('tiny'), threads: 2, languageServers: { fake: fake('hang', { startupTimeoutMs: 300 }) } });
    const warnings: string[] = [];
    engine.onWarning = (m) => warnings.push(m);
    try {
      const r = await engine.complete({ prefix: 'x.', suffix: '\n', filePath: path.join(os.tmpdir(), 'a.fake'), maxTokens: 4, stop: 'none' });
      expect(r.tokens).toBeGreaterThan(0);
      expect(r.monitor.errors).toBeGreaterThan(0);
      expect(r.monitor.error).toMatch(/did not answer/);
      expect(warnings.some((w) => /decoded unmonitored/.test(w))).toBe(true);
    } finally {
      await engine.dispose();
    }
  });
});

describe('shapes of signatures by their parameter labels', () => {
  it.each<[string[][], { minArgs: number; maxArgs: number } | null]>([
    [[['a', 'b=1']], { minArgs: 1, maxArgs: 2 }],
    [[['self_or_a: int', 'b: str = ""', '*', 'c: int']], { minArgs: 2, maxArgs: 3 }],
    [[['*args: Any', '**kwargs: Any']], { minArgs: 0, maxArgs: Infinity }],
    [[['x', '/', 'y']], { minArgs: 2, maxArgs: 2 }],
    [[['format string', 'a ...any']], { minArgs: 1, maxArgs: Infinity }], // Go variadic
    [[['String... parts']], { minArgs: 0, maxArgs: Infinity }], // Java varargs
    [[['x?: number']], { minArgs: 0, maxArgs: 1 }],
    [[['f: (a: number) => void']], { minArgs: 1, maxArgs: 1 }], // an arrow is not a default
    [[['replacer: (substring: string, ...args: any[]) => string']], { minArgs: 1, maxArgs: 1 }], // nested rest
    [[['opts: { a?: number } = {}']], { minArgs: 0, maxArgs: 1 }],
    [[['x: Map<string, number[]>']], { minArgs: 1, maxArgs: 1 }],
    [[['a'], ['a', 'b', 'c']], { minArgs: 1, maxArgs: 3 }], // overloads
    [[], null],
  ])('%j', (sigs, expected) => {
    expect(shapeOfSignatures(sigs.map((parameters) => ({ parameters })))).toEqual(expected);
  });
});

it('parses --language-server specs', () => {
  expect(parseLanguageServerSpec('go=gopls -remote=auto')).toEqual(['go', { languageId: 'go', extensions: ['.go'], command: ['gopls', '-remote=auto'] }]);
  expect(() => parseLanguageServerSpec('gopls')).toThrow(/language=command/);
});

describe('decoding Python under monitors through pyright (random tiny model: it hallucinates freely)', () => {
  const SITES = ['acc.', 'acc.owner.', 'acc.history[0].', 'os.path.'];
  let engine: Engine;
  let oracle: LspOracle;
  beforeAll(async () => {
    engine = await Engine.load({ model: ensureFixtureModel('tiny'), threads: 2 });
    oracle = new LspOracle(workspace, pyright);
  });
  afterAll(async () => {
    await engine?.dispose();
    await oracle?.dispose();
  });

  async function sample(monitors: boolean, seeds: number) {
    const out: { site: string; member: string; legal: boolean; triggers: number }[] = [];
    for (const site of SITES) {
      const prefix = HEADER + site;
      const legal = (await oracle.members('main.py', prefix + '\n', prefix.length)) ?? [];
      expect(legal.length).toBeGreaterThan(3);
      for (let seed = 0; seed < seeds; seed++) {
        const r = await engine.complete({ prefix, suffix: '\n', filePath: 'main.py', workspace, monitors, maxTokens: 12, stop: 'line', temperature: 1, seed, context: [] }); // the monitors are under test, not retrieval
        const member = /^[\p{L}_][\p{L}\p{N}_]*/u.exec(r.text)?.[0];
        // an identifier cut by max tokens is not a finished site
        if (!member || (r.stopReason === 'max-tokens' && /^\w*$/.test(r.text))) continue;
        out.push({ site, member, legal: legal.includes(member), triggers: r.monitor.triggers });
      }
    }
    return out;
  }

  it('every member written at a monitored site is one pyright lists for the receiver', async () => {
    const outcomes = await sample(true, 5);
    expect(outcomes.length).toBeGreaterThan(SITES.length * 2);
    expect(outcomes.filter((o) => !o.legal)).toEqual([]);
    expect(outcomes.every((o) => o.triggers > 0)).toBe(true);
    expect(new Set(outcomes.map((o) => o.site)).size).toBe(SITES.length);
  });

  it('without monitors the same model writes members that do not exist', async () => {
    const outcomes = await sample(false, 5);
    expect(outcomes.filter((o) => !o.legal).length).toBeGreaterThan(0);
  });
});

describe('TypeScript 7 native server (tsgo) answers as typescript@6 in process', () => {
  const ws = path.resolve(import.meta.dirname, '../fixtures/repos/monitor-cases');
  const FILE = 'src/site.ts';
  const HEAD = `import { Account, Square, type Person } from './model.js';\n`;
  const native = typescriptNativeServer();
  let tsgo: LspOracle;
  let inProcess: TypeScriptOracle;
  beforeAll(() => {
    if (!native) return;
    tsgo = new LspOracle(ws, native);
    inProcess = new TypeScriptOracle(ws);
  });
  afterAll(async () => {
    await tsgo?.dispose();
    inProcess?.dispose();
  });

  it.skipIf(!native).each([
    ['cross-file class', `export function f(acc: Account) {\n  return acc.`, `\n}\n`],
    ['generic + non-null', `export function f(m: Map<string, Account>, k: string) {\n  return m.get(k)!.`, `\n}\n`],
    ['optional chaining', `export function f(p: Person) {\n  return p.address?.`, `\n}\n`],
    ['narrowing', `export function f(x: Account | Person) {\n  if ('balance' in x) {\n    return x.`, `\n  }\n  return 0;\n}\n`],
    ['this', `export class Savings extends Account {\n  rate = 0.02;\n  accrue() {\n    return this.`, `\n  }\n}\n`],
    ['lib array', `export function f(xs: Account[]) {\n  return xs.`, `\n}\n`],
    ['syntax error before the site', `export function f(acc: Account) {\n  const broken = (1 + ;\n  return acc.`, `\n}\n`],
  ])('members: %s', async (_tag, body, after) => {
    const text = HEAD + body;
    const theirs = await tsgo.members(FILE, text + after, text.length);
    expect(theirs).not.toBeNull();
    expect(theirs).toEqual(inProcess.members(FILE, text + after, text.length));
  });

  it.skipIf(!native).each([
    ['constructor', `new Account(`],
    ['method', `declare const a: Account;\na.deposit(`],
    ['overloads', `'x'.replace(`],
    ['rest parameter', `Math.max(`],
    ['optional parameters', `[1].slice(`],
    ['subclass constructor', `new Square(`],
  ])('call shape: %s', async (_tag, body) => {
    const text = HEAD + body;
    const theirs = await tsgo.callShape(FILE, text + ');\n', text.length);
    expect(theirs).not.toBeNull();
    expect(theirs).toEqual(inProcess.callShape(FILE, text + ');\n', text.length));
  });

  it.skipIf(!native).each([
    ['clean', `export const n: number = new Account('a', 1, { name: 'x' }).balance;\n`],
    ['type error and unknown name', `export const n: number = 'x';\nexport const m = nope + 1;\n`],
    ['arity and not callable', `const a = new Account('a', 1, { name: 'x' });\na.deposit();\na.balance();\n`],
    ['syntax', `export const n = (1 + ;\n`],
  ])('errors: %s, the same codes as typescript@6 (hints such as unused names left out)', async (_tag, body) => {
    const text = `import { Account } from './model.js';\n${body}`;
    const theirs = await tsgo.errors(FILE, text);
    expect(theirs).not.toBeNull();
    const codes = (ds: { code: number }[]) => ds.map((d) => d.code).sort();
    expect(codes(theirs!)).toEqual(codes(inProcess.errors(FILE, text)));
  });
});

describe.skipIf(!defaultLanguageServers().cpp)('clangd (C++) through the same oracle, where installed', () => {
  const ws = path.resolve(import.meta.dirname, '../fixtures/repos/cpp-shapes');
  const BASE = '#include "shapes.h"\nvoid f(Account acc) {\n  ';
  let o: LspOracle;
  beforeAll(() => {
    o = new LspOracle(ws, defaultLanguageServers().cpp!);
  });
  afterAll(() => o?.dispose());

  it('members of a struct (after clangd has built the preamble) and call shapes with defaults and C varargs', async () => {
    const text = BASE + 'acc.';
    // until its preamble is built clangd answers with plain words (kind Text): no opinion, not a wrong list
    let members: string[] | null = null;
    for (let i = 0; i < 50 && !members; i++) {
      members = await o.members('main.cpp', text + '\n}\n', text.length);
      if (!members) await new Promise((r) => setTimeout(r, 200));
    }
    expect(members).toEqual(['balance', 'deposit', 'owner', 'withdraw']);
    const call = (code: string) => o.callShape('main.cpp', BASE + code + ');\n}\n', (BASE + code).length);
    expect(await call('acc.deposit(')).toEqual({ minArgs: 1, maxArgs: 2 });
    expect(await call('total(')).toEqual({ minArgs: 1, maxArgs: Infinity });
  });
});
