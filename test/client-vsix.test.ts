/**
 * The packaged extension: builds the .vsix with client/scripts/package.mjs (what `npm run package:vsix` runs after
 * building), checks that it carries the extension bundle, the server, the embedded model and ONNX Runtime's binding
 * for this platform only, then unpacks it and completes a member access with the server inside it, so a runtime
 * dependency the package forgot fails here, and activates the packaged extension against a scripted editor API
 * (scripted-vscode.ts) so its own server start, status bar, inline completion and accept are exercised. Slow (packs ~170 MB): runs only with MGD_TEST_VSIX=1, after
 * `npm ci --prefix client` (the client's own packages: esbuild, @vscode/vsce, yauzl).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { CancellationTokenSource, scriptedEditor } from './scripted-vscode.js';
import { embeddedModelDir } from '../engine/paths.js';

const root = path.resolve(import.meta.dirname, '..');
const enabled = process.env.MGD_TEST_VSIX === '1';
if (!enabled) console.warn('client-vsix.test.ts: skipped, set MGD_TEST_VSIX=1 to package and inspect the .vsix (after npm ci --prefix client)');

const target = `${process.platform}-${process.arch}`;
const ws = path.join(root, 'fixtures/repos/shapes');
const file = path.join(ws, 'src/main.ts');
const CIRCLE_MEMBERS = ['area', 'center', 'radius', 'translate'];
let dir: string;
let vsix: string;
let unpacked: string;
let entries: string[];

interface ZipEntry {
  fileName: string;
}
interface ZipFile {
  readEntry(): void;
  on(event: 'entry', f: (e: ZipEntry) => void): void;
  on(event: 'end', f: () => void): void;
  on(event: 'error', f: (e: Error) => void): void;
  openReadStream(e: ZipEntry, f: (err: Error | null, s: NodeJS.ReadableStream) => void): void;
}

/** Lists (and, given a directory, extracts) a zip with yauzl, the reader @vscode/vsce itself depends on. */
function readZip(file: string, extractTo?: string): Promise<string[]> {
  const yauzl = createRequire(path.join(root, 'client/package.json'))('yauzl') as { open(p: string, o: object, cb: (e: Error | null, z: ZipFile) => void): void };
  return new Promise((resolve, reject) => {
    yauzl.open(file, { lazyEntries: true }, (err, zip) => {
      if (err) return reject(err);
      const names: string[] = [];
      zip.on('error', reject);
      zip.on('end', () => resolve(names));
      zip.on('entry', (e) => {
        names.push(e.fileName);
        if (!extractTo || e.fileName.endsWith('/')) return zip.readEntry();
        const dest = path.join(extractTo, e.fileName);
        if (!dest.startsWith(extractTo + path.sep)) return reject(new Error(`entry outside the archive: ${e.fileName}`));
        fs.mkdirSync(path.dirname(dest), { recursive: true });
        zip.openReadStream(e, (err2, stream) => {
          if (err2) return reject(err2);
          const out = fs.createWriteStream(dest);
          stream.on('error', reject);
          out.on('error', reject);
          out.on('finish', () => zip.readEntry());
          stream.pipe(out);
        });
      });
      zip.readEntry();
    });
  });
}

describe.skipIf(!enabled)(`the packaged extension (.vsix for ${target})`, () => {
  beforeAll(async () => {
    for (const need of ['client/node_modules/@vscode/vsce', 'client/node_modules/yauzl', 'dist/server/cli.js']) {
      if (!fs.existsSync(path.join(root, need))) throw new Error(`${need} is missing: run npm run build and npm ci --prefix client first`);
    }
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mgd-vsix-'));
    vsix = path.join(dir, 'mgd.vsix');
    execFileSync(process.execPath, [path.join(root, 'client/scripts/package.mjs'), '--out', vsix], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
    unpacked = path.join(dir, 'unpacked');
    entries = await readZip(vsix, unpacked);
  }, 300_000);
  afterAll(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('carries the extension bundle, the server, the embedded model and the native bindings for this platform', async () => {
    const has = new Set(entries);
    for (const f of [
      'extension/package.json',
      'extension/dist/extension.js',
      'extension/server/package.json',
      'extension/server/bin/mgd.js',
      'extension/server/dist/server/cli.js',
      'extension/server/dist/server/lsp/server.js',
      ...['model.safetensors', 'tokenizer.json', 'config.json'].map((f) => `extension/server/${path.relative(root, embeddedModelDir())}/${f}`),
      `extension/server/node_modules/onnxruntime-node/bin/napi-v6/${process.platform}/${process.arch}/onnxruntime_binding.node`,
      'extension/server/node_modules/vscode-languageserver/package.json',
      'extension/server/node_modules/typescript/package.json',
    ]) {
      expect(has.has(f), f).toBe(true);
    }
    // no other platform's ONNX Runtime, no client sources or development packages
    const other = entries.filter((e) => /onnxruntime-node\/bin\/napi-v\d+\/[^/]+\/[^/]+\//.test(e) && !e.includes(`/${process.platform}/${process.arch}/`));
    expect(other).toEqual([]);
    expect(entries.filter((e) => /^extension\/(src|scripts|node_modules)\//.test(e) || /node_modules\/(vitest|esbuild|@vscode\/vsce)\//.test(e))).toEqual([]);
    const mb = fs.statSync(vsix).size / 2 ** 20;
    console.log(`client-vsix.test.ts: ${entries.length} entries, ${mb.toFixed(1)} MiB`);
  });

  it('runs: the server inside the package completes a member access with the embedded model', async () => {
    const ext = JSON.parse(fs.readFileSync(path.join(unpacked, 'extension/package.json'), 'utf8')) as Record<string, unknown>;
    expect(ext.main).toBe('./dist/extension.js');
    expect(ext.devDependencies).toBeUndefined();
    expect(JSON.parse(fs.readFileSync(path.join(unpacked, 'extension/server/package.json'), 'utf8')).type).toBe('module');
    const server = path.join(unpacked, 'extension/server');
    const r = spawnSync(process.execPath, [path.join(server, 'bin/mgd.js'), 'complete', file, '--line', '10', '--character', '13', '--workspace', ws, '--json'], {
      encoding: 'utf8',
      timeout: 120_000,
    });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { text: string; model: string; monitor: { triggers: number; errors: number } };
    // the embedded model inside the package, not the checkout's
    expect(out.model).toBe(path.join(server, path.relative(root, embeddedModelDir())));
    expect(out.monitor.triggers).toBeGreaterThan(0);
    expect(out.monitor.errors).toBe(0);
    const member = /^[A-Za-z_$][\w$]*/.exec(out.text)?.[0] ?? '';
    expect(CIRCLE_MEMBERS.some((m) => member.length > 0 && m.startsWith(member)), out.text).toBe(true);
  });

  it('activates in a scripted editor: starts its own server, completes inline after `c.`, reports the accept', async () => {
    const ext = path.join(unpacked, 'extension');
    const editor = scriptedEditor(file, 'typescript', ws, { enable: true, maxTokens: 16, monitors: true, model: '', weights: 'f32', threads: 2, nodePath: process.execPath, debounceMs: 0, trace: { server: 'off' } });
    const extension = editor.load(path.join(ext, 'dist/extension.js'));
    extension.activate({ subscriptions: [], extensionPath: ext });
    try {
      // the status bar goes from starting through loading to ready (the server's load progress ends), then names the
      // model and backend that run (from mgd/stats)
      await vi.waitFor(() => expect(editor.statusTexts.at(-1)).toBe('$(sparkle) mgd: mgd-coder-30m · onnx f32'), { timeout: 60_000, interval: 50 });
      expect(editor.statusTexts).toContain('$(sparkle) mgd');
      expect(editor.statusTexts[0]).toBe('$(loading~spin) mgd');
      expect(editor.logs.some((l) => l.includes(`${path.join(ext, 'server', 'bin', 'mgd.js')} serve --stdio`)), editor.logs.join('\n')).toBe(true);
      const provider = editor.providers.get('registerInlineCompletionItemProvider')?.[1] as {
        provideInlineCompletionItems(d: unknown, p: unknown, c: unknown, t: unknown): Promise<Array<{ insertText: string; command?: { command: string } }> | { items: Array<{ insertText: string; command?: { command: string } }> }>;
      };
      expect(provider, [...editor.providers.keys()].join(', ')).toBeDefined();
      const result = await provider.provideInlineCompletionItems(editor.document, new editor.Position(10, 13), { triggerKind: 1 /* Automatic */ }, new CancellationTokenSource().token);
      const items = Array.isArray(result) ? result : result.items;
      expect(items).toHaveLength(1);
      const member = /^[A-Za-z_$][\w$]*/.exec(items[0]!.insertText)?.[0] ?? '';
      expect(CIRCLE_MEMBERS.some((m) => member.length > 0 && m.startsWith(member)), items[0]!.insertText).toBe(true);
      // accepting runs the item's command, which tells the server; its statistics count it
      expect(items[0]!.command?.command).toBe('mgd.didAccept');
      await editor.commands.get('mgd.didAccept')!();
      await editor.commands.get('mgd.showStats')!();
      const stats = editor.notifications.find((n) => n.kind === 'info' && n.detail?.includes('requests: '));
      expect(stats?.detail, JSON.stringify(editor.notifications)).toMatch(/^accepted: 1$/m);
      expect(editor.notifications.filter((n) => n.kind === 'error')).toEqual([]);
      // disabled: no request reaches the server
      await editor.commands.get('mgd.disable')!();
      expect(editor.statusTexts.at(-1)).toBe('$(circle-slash) mgd');
      expect(await provider.provideInlineCompletionItems(editor.document, new editor.Position(10, 13), { triggerKind: 0 }, new CancellationTokenSource().token)).toBeNull();
    } finally {
      await extension.deactivate();
    }
  });

  it('a restart that cuts the start before it short shows no error, and ends with one ready server', async () => {
    const ext = path.join(unpacked, 'extension');
    const editor = scriptedEditor(file, 'typescript', ws, { enable: true, maxTokens: 16, monitors: true, model: '', weights: 'f32', threads: 2, nodePath: process.execPath, debounceMs: 0, trace: { server: 'off' } });
    const extension = editor.load(path.join(ext, 'dist/extension.js'));
    extension.activate({ subscriptions: [], extensionPath: ext });
    const starts = () => editor.logs.filter((l) => l.includes('starting the server with')).length;
    try {
      await vi.waitFor(() => expect(editor.statusTexts.at(-1)).toMatch(/^\$\(sparkle\) mgd: /), { timeout: 60_000, interval: 50 });
      const restart = editor.commands.get('mgd.restartServer')!;
      // the first restart's new client is initializing (its process just spawned) when the second one disposes it
      const first = restart();
      await vi.waitFor(() => expect(starts()).toBe(2), { timeout: 30_000, interval: 2 });
      await Promise.all([first, restart()]);
      expect(starts()).toBe(3);
      await vi.waitFor(() => expect(editor.statusTexts.at(-1)).toMatch(/^\$\(sparkle\) mgd: /), { timeout: 60_000, interval: 50 });
      expect(editor.notifications.filter((n) => n.kind === 'error'), editor.logs.join('\n')).toEqual([]);
    } finally {
      await extension.deactivate();
    }
  });
});
