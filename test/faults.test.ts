/**
 * Faults while serving: `mgd serve --stdio` keeps answering when what it persisted (KV cache, index) is corrupted or
 * deleted under it, when its KV cache directory cannot be written (replaced by a file: every write fails, as on a full
 * disk; and on a real full disk, a 64 KB tmpfs, where a mount can be made), when the workspace folder is removed, and when its model directory is replaced under it; it answers again
 * once the workspace is back (answers are checked for being there, not for their text, which the verifier's time budget
 * makes load-dependent), starts on a damaged cache, and never reports an unhandled error. (Language servers that
 * crash, hang or answer garbage: lsp-oracle.test.ts. The built ONNX graph is left alone: onnxruntime maps its weight
 * file, and a file truncated in place under a mapping faults the process; see the closing notes of issue 19.)
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import {
  createProtocolConnection,
  DidOpenTextDocumentNotification,
  ExitNotification,
  InitializedNotification,
  InitializeRequest,
  InlineCompletionRequest,
  ShutdownRequest,
  StreamMessageReader,
  StreamMessageWriter,
} from 'vscode-languageserver-protocol/node';
import { ensureFixtureModel } from '../engine/model/fixtures.js';
import { exportGguf } from '../engine/model/gguf.js';

const root = path.resolve(import.meta.dirname, '..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mgd-faults-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Every file under `dir`. */
function files(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true, recursive: true }).filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name));
}

/** `mgd serve --stdio` with a protocol client: completions on fresh documents of one text, then shutdown. */
async function serve(ws: string, model: string, cache: string) {
  const child = spawn(process.execPath, [path.join(root, 'bin/mgd.js'), 'serve', '--stdio', '--model', model, '--threads', '1'], {
    cwd: ws,
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, MGD_CACHE_DIR: cache },
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const conn = createProtocolConnection(new StreamMessageReader(child.stdout!), new StreamMessageWriter(child.stdin!));
  conn.listen();
  // no repository context: the prompt is the document's alone, so one text gets one greedy answer
  await conn.sendRequest(InitializeRequest.type, { processId: process.pid, rootUri: pathToFileURL(ws).href, workspaceFolders: [{ uri: pathToFileURL(ws).href, name: 'ws' }], capabilities: {}, initializationOptions: { maxTokens: 8, contextTokens: 0 } });
  await conn.sendNotification(InitializedNotification.type, {});
  const text = fs.readFileSync(path.join(root, 'fixtures/repos/monitor-cases/src/model.ts'), 'utf8') + '\nexport function f(acc: Account) {\n  return acc.';
  const lines = text.split('\n');
  let n = 0;
  return {
    stderr: () => stderr,
    async complete(): Promise<string> {
      const uri = pathToFileURL(path.join(ws, `src/fault-${n++}.ts`)).href;
      await conn.sendNotification(DidOpenTextDocumentNotification.type, { textDocument: { uri, languageId: 'typescript', version: 1, text } });
      const r = await conn.sendRequest(InlineCompletionRequest.type, { textDocument: { uri }, position: { line: lines.length - 1, character: lines.at(-1)!.length }, context: { triggerKind: 2 } });
      const items = Array.isArray(r) ? r : (r?.items ?? []);
      return items.map((i) => (typeof i.insertText === 'string' ? i.insertText : i.insertText.value)).join('\n');
    },
    async shutdown(): Promise<number | null> {
      await conn.sendRequest(ShutdownRequest.type);
      await conn.sendNotification(ExitNotification.type);
      const code = await new Promise<number | null>((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.on('exit', resolve)));
      conn.dispose();
      return code;
    },
    kill: () => child.kill(),
  };
}

/** Corrupts every other persisted file under `dir` (the KV cache, the index) and deletes the rest. */
function damage(dir: string): number {
  const hit = files(dir).filter((f) => !f.includes(`${path.sep}onnx${path.sep}`));
  for (const [i, f] of hit.entries()) i % 2 ? fs.rmSync(f) : fs.writeFileSync(f, Buffer.alloc(4096, 0xab));
  return hit.length;
}

describe('faults while serving', () => {
  it('answers through a corrupted cache, an unwritable cache directory, a removed workspace and a replaced model', async () => {
    const ws = path.join(tmp, 'ws');
    fs.cpSync(path.join(root, 'fixtures/repos/monitor-cases'), ws, { recursive: true });
    const model = path.join(tmp, 'model');
    fs.cpSync(ensureFixtureModel('tiny'), model, { recursive: true });
    const cache = path.join(tmp, 'cache');

    // a first session leaves a persisted KV cache and index behind
    const first = await serve(ws, model, cache);
    expect(await first.complete()).not.toBe('');
    expect(await first.shutdown()).toBe(0);

    const s = await serve(ws, model, cache);
    try {
      // (answers are compared for being there, not for their text: which candidate the verifier picks within its
      // time budget depends on the machine's load, and the persisted KV is int8)
      expect(await s.complete()).not.toBe('');
      // what it persisted, corrupted and deleted under it
      expect(damage(cache)).toBeGreaterThan(0);
      expect(await s.complete()).not.toBe('');

      // the model directory replaced by something that is no model (the weights are loaded)
      fs.rmSync(model, { recursive: true, force: true });
      fs.mkdirSync(model);
      fs.writeFileSync(path.join(model, 'config.json'), '{ broken');
      expect(await s.complete()).not.toBe('');

      // the workspace folder removed: an answer (its analysis may degrade), then answers once it is back
      const saved = path.join(tmp, 'ws-saved');
      fs.renameSync(ws, saved);
      expect(typeof (await s.complete())).toBe('string');
      fs.renameSync(saved, ws);
      expect(await s.complete()).not.toBe('');

      // the KV cache's directory becomes a file: every write under it fails, as on a full disk; shutdown persists
      fs.rmSync(path.join(cache, 'kv'), { recursive: true, force: true });
      fs.writeFileSync(path.join(cache, 'kv'), 'not a directory');
      expect(await s.complete()).not.toBe('');
      expect(await s.shutdown()).toBe(0);
      expect(s.stderr()).not.toMatch(/unhandled|uncaught/i);
    } finally {
      s.kill();
    }

    // and the next session starts on the damaged cache
    fs.rmSync(path.join(cache, 'kv'), { force: true });
    fs.cpSync(ensureFixtureModel('tiny'), model, { recursive: true });
    damage(cache);
    const next = await serve(ws, model, cache);
    try {
      expect(await next.complete()).not.toBe('');
      expect(await next.shutdown()).toBe(0);
    } finally {
      next.kill();
    }
  });
});

/** A 64 KB tmpfs at `dir`, where this process may mount one (root with the privilege); false otherwise. */
function mountTinyDisk(dir: string): boolean {
  fs.mkdirSync(dir, { recursive: true });
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe('a full disk', () => {
  const disk = path.join(tmp, 'full-disk');
  const mounted = mountTinyDisk(disk);
  afterAll(() => {
    if (mounted) execFileSync('umount', ['-l', disk], { stdio: 'ignore' });
  });

  // a real full disk needs a mount; where none can be made, the unwritable directory above stands in for it
  it.skipIf(!mounted)('the cache on a 64 KB tmpfs: the model still loads (its graph built for this run only), answers come, shutdown is clean', async () => {
    const ws = path.join(tmp, 'ws-full');
    fs.cpSync(path.join(root, 'fixtures/repos/monitor-cases'), ws, { recursive: true });
    const s = await serve(ws, ensureFixtureModel('tiny'), disk);
    try {
      expect(await s.complete()).not.toBe('');
      expect(await s.complete()).not.toBe('');
      expect(await s.shutdown()).toBe(0);
      expect(s.stderr()).not.toMatch(/unhandled|uncaught/i);
    } finally {
      s.kill();
    }
  });

  it.skipIf(!mounted)('a GGUF model with the cache on that disk: its derived config and tokenizer go to a private directory, answers come', async () => {
    const ws = path.join(tmp, 'ws-full-gguf');
    fs.cpSync(path.join(root, 'fixtures/repos/monitor-cases'), ws, { recursive: true });
    const gguf = exportGguf(ensureFixtureModel('tiny'), path.join(tmp, 'tiny-full-disk.gguf'), 'q8_0').file;
    // fill what is left of the disk: even the few KB of derived files cannot be written
    const filler = path.join(disk, 'filler');
    try {
      fs.writeFileSync(filler, Buffer.alloc(128 * 1024));
    } catch (e) {
      expect((e as NodeJS.ErrnoException).code).toBe('ENOSPC');
    }
    const s = await serve(ws, gguf, disk);
    try {
      expect(await s.complete()).not.toBe('');
      // nothing half-written left in the cache as if complete
      const derived = path.join(disk, 'gguf-models');
      const entries = fs.existsSync(derived) ? fs.readdirSync(derived) : [];
      expect(entries.filter((e) => fs.existsSync(path.join(derived, e, 'tokenizer.json')))).toEqual([]);
      expect(await s.shutdown()).toBe(0);
      expect(s.stderr()).not.toMatch(/unhandled|uncaught/i);
    } finally {
      s.kill();
      fs.rmSync(filler, { force: true });
    }
  });
});
