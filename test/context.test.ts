/**
 * Repository context: symbols by tree-sitter, the workspace index (bounded, persisted, skipping what it must), and
 * retrieval of what a completion needs from other files.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { RepoIndex } from '../engine/context/repo-index.js';
import { retrieveContext } from '../engine/context/retrieve.js';
import { extractSymbols } from '../engine/context/symbols.js';
import { Engine } from '../engine/engine.js';

const monitorCases = path.resolve(import.meta.dirname, '../fixtures/repos/monitor-cases');
const pythonShapes = path.resolve(import.meta.dirname, '../fixtures/repos/python-shapes');
const read = (ws: string, f: string) => fs.readFileSync(path.join(ws, f), 'utf8');

describe('symbols', () => {
  it('TypeScript: exported signatures without bodies, class members listed, doc comments kept, imports', () => {
    const s = extractSymbols('typescript', `import { x } from './x.js';\n/** Adds. */\nexport function add(a: number, b: number): number {\n  return a + b;\n}\nexport class Box<T> {\n  value: T;\n  get(): T { return this.value; }\n}\nconst hidden = 1;\nexport enum K { A, B }\n`);
    const by = Object.fromEntries(s.definitions.map((d) => [d.name, d]));
    expect(by.add!.signature).toBe('/** Adds. */\nexport function add(a: number, b: number): number');
    expect(by.Box!.signature).toContain('export class Box<T> {\n  value: T\n  get(): T\n}');
    expect(by.Box!.signature).not.toContain('return');
    expect(by.hidden!.exported).toBe(false);
    expect(by.K!.signature).toBe('export enum K { A, B }');
    expect(s.imports).toEqual(['./x.js']);
  });

  it('Python: defs and classes with their methods and annotated fields; imports', () => {
    const s = extractSymbols('python', read(pythonShapes, 'shapes/accounts.py'));
    const account = s.definitions.find((d) => d.name === 'Account')!;
    expect(account.signature).toContain('def deposit(self, amount: float, memo: str = "") -> Transaction');
    expect(account.signature).toContain('owner: str');
    expect(account.signature).not.toContain('self.balance +=');
    expect(s.definitions.find((d) => d.name === 'total')!.signature).toBe('def total(*accounts: Account) -> float');
    expect(s.imports).toContain('dataclasses');
  });

  it('other grammars: at least their definitions', () => {
    expect(extractSymbols('go', 'package m\n\nfunc Add(a, b int) int { return a + b }\n').definitions.map((d) => d.signature)).toEqual(['func Add(a, b int) int']);
    expect(extractSymbols('rust', 'pub fn add(a: i32) -> i32 { a }\nstruct P { x: i32 }\n').definitions.map((d) => d.name)).toEqual(['add', 'P']);
    expect(extractSymbols('java', 'class A { int f(int x) { return x; } }').definitions[0]!.signature).toContain('int f(int x)');
    // a file with syntax errors still yields what tree-sitter recovers
    expect(extractSymbols('typescript', 'export function ok(a: number) {}\nexport class Broken {\n  m( {\n').definitions.map((d) => d.name)).toContain('ok');
  });
});

describe('the repository index', () => {
  function workspace(): string {
    const ws = fs.mkdtempSync(path.join(os.tmpdir(), 'mgd-index-'));
    fs.mkdirSync(path.join(ws, 'src/deep'), { recursive: true });
    fs.mkdirSync(path.join(ws, 'node_modules/dep'), { recursive: true });
    fs.writeFileSync(path.join(ws, 'src/a.ts'), 'export function alpha(n: number): string { return String(n); }\n');
    fs.writeFileSync(path.join(ws, 'src/deep/b.ts'), 'export class Beta { run(): void {} }\n');
    fs.writeFileSync(path.join(ws, 'node_modules/dep/index.ts'), 'export function dependency() {}\n');
    fs.writeFileSync(path.join(ws, 'src/bundle.min.js'), 'var a=' + '1+'.repeat(5000) + '1;\n');
    fs.writeFileSync(path.join(ws, 'src/blob.ts'), Buffer.from([0x65, 0x00, 0x66]));
    fs.writeFileSync(path.join(ws, 'src/huge.ts'), '// x\n'.repeat(300_000));
    fs.symlinkSync(ws, path.join(ws, 'src/loop')); // a symlink loop back to the root
    return ws;
  }

  it('indexes sources, skipping dependencies, symlinks, binary, minified and huge files (each reason counted)', async () => {
    const ws = workspace();
    const logs: string[] = [];
    const index = new RepoIndex(ws, { log: (m) => logs.push(m) });
    await index.whenIndexed();
    expect([...index.files.keys()].sort()).toEqual(['src/a.ts', 'src/deep/b.ts']);
    expect(index.definitions('Beta')[0]!.file).toBe('src/deep/b.ts');
    expect(index.stats().skipped).toMatchObject({ 'symbolic links': 1, 'binary files': 1, 'minified or generated files': 1, 'files over 1000000 bytes': 1 });
    expect(logs.join('\n')).toMatch(/skipped/);
  });

  it('stays within its file limit', async () => {
    const ws = workspace();
    for (let i = 0; i < 30; i++) fs.writeFileSync(path.join(ws, `src/f${i}.ts`), `export const v${i} = ${i};\n`);
    const index = new RepoIndex(ws, { maxFiles: 10 });
    await index.whenIndexed();
    expect(index.files.size).toBeGreaterThan(0);
    expect(index.files.size).toBeLessThanOrEqual(10); // at most 10 files are considered (some of them are skipped)
    expect(Object.keys(index.stats().skipped).some((k) => /over the limit/.test(k))).toBe(true);
  });

  it('is persisted with content hashes: a restart reuses unchanged files, re-parses changed ones, drops deleted ones', async () => {
    const ws = workspace();
    const persistFile = path.join(ws, '..', path.basename(ws) + '-index.json');
    const first = new RepoIndex(ws, { persistFile });
    await first.whenIndexed();
    expect(fs.existsSync(persistFile)).toBe(true);
    // a persisted entry carries a marker the file does not have: if it is reused, the marker survives
    const saved = JSON.parse(fs.readFileSync(persistFile, 'utf8'));
    saved.files.find((f: { path: string }) => f.path === 'src/deep/b.ts').symbols.definitions[0].signature = 'FROM PERSISTED INDEX';
    fs.writeFileSync(persistFile, JSON.stringify(saved));
    fs.writeFileSync(path.join(ws, 'src/a.ts'), 'export function gamma(): void {}\n');
    const future = new Date(Date.now() + 5000);
    fs.utimesSync(path.join(ws, 'src/a.ts'), future, future);
    fs.writeFileSync(path.join(ws, 'src/c.ts'), 'export const c = 1;\n');
    const second = new RepoIndex(ws, { persistFile });
    await second.whenIndexed();
    expect(second.definitions('Beta')[0]!.def.signature).toBe('FROM PERSISTED INDEX');
    expect(second.definitions('gamma')).toHaveLength(1);
    expect(second.definitions('alpha')).toHaveLength(0);
    expect(second.files.has('src/c.ts')).toBe(true);
  });

  it('an open document is indexed from the editor\'s text, not the disk', async () => {
    const ws = workspace();
    const index = new RepoIndex(ws);
    await index.whenIndexed();
    index.update(path.join(ws, 'src/a.ts'), 'export function delta(x: string): number { return 1; }\n');
    expect(index.definitions('delta')).toHaveLength(1);
    expect(index.definitions('alpha')).toHaveLength(0);
  });
});

describe('retrieval', () => {
  it('a completion that needs a class from another file gets its outline (imported module first)', async () => {
    const index = new RepoIndex(monitorCases);
    await index.whenIndexed();
    const file = path.join(monitorCases, 'src/use.ts');
    const text = read(monitorCases, 'src/use.ts') + '\nexport function pay(acc: Account) {\n  acc.';
    index.update(file, text);
    const blocks = retrieveContext(index, file, text, '');
    expect(blocks[0]).toMatchObject({ path: 'src/model.ts', source: 'import' });
    expect(blocks[0]!.text).toContain('deposit(amount: number): void');
    expect(blocks[0]!.text).not.toContain('this.balance +=');
  });

  it('finds definitions by the names used near the cursor when nothing imports them, and similar recent code', async () => {
    const ws = fs.mkdtempSync(path.join(os.tmpdir(), 'mgd-retrieve-'));
    fs.writeFileSync(path.join(ws, 'geometry.ts'), 'export interface Vector { x: number; y: number }\nexport function dot(a: Vector, b: Vector): number { return a.x * b.x + a.y * b.y; }\n');
    const index = new RepoIndex(ws);
    await index.whenIndexed();
    index.update(path.join(ws, 'other.ts'), 'function lengthOf(v: Vector) {\n  const squared = dot(v, v);\n  return Math.sqrt(squared);\n}\n');
    const prefix = 'declare const v: Vector;\nconst squared = dot(v, v);\nconst n = ';
    index.update(path.join(ws, 'main.ts'), prefix);
    const blocks = retrieveContext(index, path.join(ws, 'main.ts'), prefix, '');
    const defs = blocks.filter((b) => b.source === 'definition');
    expect(defs.map((b) => b.path)).toEqual(['geometry.ts']);
    expect(defs[0]!.text).toContain('export interface Vector');
    expect(defs[0]!.text).toContain('export function dot(a: Vector, b: Vector): number');
    expect(blocks.at(-1)).toMatchObject({ path: 'other.ts', source: 'similar' });
  });

  // `book`'s type is inferred from a call: the name Ledger appears nowhere near the cursor, so only the type oracle
  // can say which definition the completion needs
  for (const typescript of ['in-process', 'native'] as const) {
    it(`at a member access, the receiver's type definition comes from the type oracle (${typescript})`, async () => {
      const ws = fs.mkdtempSync(path.join(os.tmpdir(), 'mgd-receiver-'));
      fs.writeFileSync(path.join(ws, 'tsconfig.json'), '{"compilerOptions":{"strict":true,"module":"nodenext","target":"es2022"}}\n');
      fs.writeFileSync(path.join(ws, 'ledger.ts'), 'export class Ledger {\n  private rows: number[] = [];\n  record(amount: number): void { this.rows.push(amount); }\n  balance(): number { return this.rows.reduce((a, b) => a + b, 0); }\n}\n');
      fs.writeFileSync(path.join(ws, 'factory.ts'), "import { Ledger } from './ledger.js';\nexport function openBook() {\n  return new Ledger();\n}\n");
      const prefix = "import { openBook } from './factory.js';\nconst book = openBook();\nbook.";
      fs.writeFileSync(path.join(ws, 'main.ts'), prefix + '\n');
      const { ensureFixtureModel } = await import('../engine/model/fixtures.js');
      const engine = await Engine.load({ model: ensureFixtureModel('tiny'), threads: 2, typescript });
      try {
        await engine.indexWorkspace(ws);
        const req = { prefix, suffix: '\n', filePath: 'main.ts', workspace: ws };
        // a language server's first answers can take a while: ask until it is up (the engine waits 250 ms per request)
        let blocks = await engine.contextFor(req);
        for (let i = 0; i < 40 && !blocks.some((b) => b.path === 'ledger.ts'); i++) {
          await new Promise((r) => setTimeout(r, 250));
          blocks = await engine.contextFor(req);
        }
        const ledger = blocks.find((b) => b.path === 'ledger.ts');
        expect(ledger, JSON.stringify(blocks)).toMatchObject({ source: 'definition' });
        expect(ledger!.text).toContain('class Ledger');
        expect(ledger!.text).toContain('balance(): number');
        // by name alone (monitors off: no oracle asked) the class is out of reach
        const byName = await engine.contextFor({ ...req, monitors: false });
        expect(byName.some((b) => b.path === 'ledger.ts')).toBe(false);
        // in a string the receiver is no receiver
        const inString = await engine.contextFor({ ...req, prefix: prefix + "\nconst s = 'book." });
        expect(inString.some((b) => b.path === 'ledger.ts')).toBe(false);
      } finally {
        await engine.dispose();
      }
    });
  }

  it('the engine puts retrieved context in the prompt, and --no-context ([]) keeps it out', async () => {
    const { ensureFixtureModel } = await import('../engine/model/fixtures.js');
    const engine = await Engine.load({ model: ensureFixtureModel('tiny'), threads: 2 });
    try {
      await engine.indexWorkspace(pythonShapes);
      const prefix = read(pythonShapes, 'main.py') + 'alice.';
      const base = { prefix, suffix: '\n', filePath: 'main.py', workspace: pythonShapes, monitors: false, maxTokens: 2 };
      const withContext = await engine.complete(base);
      expect(withContext.context.blocks).toBeGreaterThan(0);
      expect(withContext.context.tokens).toBeGreaterThan(0);
      const without = await engine.complete({ ...base, context: [] });
      expect(without.context).toEqual({ blocks: 0, tokens: 0 });
      expect(without.promptTokens).toBeLessThan(withContext.promptTokens);
    } finally {
      await engine.dispose();
    }
  });
});

describe('the index follows the disk', () => {
  it('re-indexes files changed, added and deleted while watching', async () => {
    const ws = fs.mkdtempSync(path.join(os.tmpdir(), 'mgd-watch-'));
    fs.mkdirSync(path.join(ws, 'src'));
    fs.writeFileSync(path.join(ws, 'src/a.ts'), 'export function before(): void {}\n');
    const index = new RepoIndex(ws);
    await index.whenIndexed();
    const stop = index.watch();
    try {
      fs.writeFileSync(path.join(ws, 'src/a.ts'), 'export function after(): void {}\n');
      fs.writeFileSync(path.join(ws, 'src/b.ts'), 'export class Added {}\n');
      const until = async (ok: () => boolean) => {
        for (let i = 0; i < 100 && !ok(); i++) await new Promise((r) => setTimeout(r, 50));
        return ok();
      };
      expect(await until(() => index.definitions('after').length === 1 && index.definitions('Added').length === 1)).toBe(true);
      expect(index.definitions('before')).toHaveLength(0);
      fs.rmSync(path.join(ws, 'src/b.ts'));
      expect(await until(() => index.definitions('Added').length === 0)).toBe(true);
    } finally {
      stop();
    }
  });

  it('does not follow symbolic links that appear while watching (a file or a directory outside the workspace)', async () => {
    const outside = fs.mkdtempSync(path.join(os.tmpdir(), 'mgd-outside-'));
    fs.writeFileSync(path.join(outside, 'secret.ts'), 'export class Secret {}\n');
    const ws = fs.mkdtempSync(path.join(os.tmpdir(), 'mgd-watch-'));
    fs.mkdirSync(path.join(ws, 'src'));
    const index = new RepoIndex(ws);
    await index.whenIndexed();
    const stop = index.watch();
    try {
      fs.symlinkSync(path.join(outside, 'secret.ts'), path.join(ws, 'src/link.ts'));
      fs.symlinkSync(outside, path.join(ws, 'linked'));
      fs.writeFileSync(path.join(outside, 'later.ts'), 'export class Later {}\n'); // inside the linked directory
      fs.writeFileSync(path.join(ws, 'src/real.ts'), 'export class Real {}\n');
      for (let i = 0; i < 100 && index.definitions('Real').length === 0; i++) await new Promise((r) => setTimeout(r, 50));
      await new Promise((r) => setTimeout(r, 400)); // past the watcher's coalescing of the links' events
      expect(index.definitions('Real')).toHaveLength(1);
      expect(index.definitions('Secret')).toHaveLength(0);
      expect(index.definitions('Later')).toHaveLength(0);
    } finally {
      stop();
    }
  });
});
