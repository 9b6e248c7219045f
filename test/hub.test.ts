/**
 * Models by Hugging Face id (engine/model/hub.ts) against a local server that answers as the hub does: the revision's
 * file list, resolve URLs with ETags (sha256 for LFS files) and range requests. An interrupted download resumes, a
 * tampered one is rejected, and the pulled model loads by its id from the cache layout huggingface_hub uses.
 */
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cachedSnapshot, listCachedModels, parseModelId, pullModel, resolveModelArg } from '../engine/model/hub.js';
import { openModelDir } from '../engine/model/directory.js';
import { ensureFixtureModel } from '../engine/model/fixtures.js';
import { Engine } from '../engine/engine.js';
import { parsePullProgress } from '../client/src/contract.js';
import { createMessageConnection, StreamMessageReader, StreamMessageWriter } from 'vscode-jsonrpc/node';
import { pathToFileURL } from 'node:url';

const COMMIT = 'c0ffee'.padEnd(40, '0');
const source = ensureFixtureModel('tiny');
const files = Object.fromEntries(fs.readdirSync(source).map((f) => [f, fs.readFileSync(path.join(source, f))]));
const siblings = [...Object.keys(files), 'README.md', 'onnx/model.onnx'];
const sha256 = (b: Buffer) => crypto.createHash('sha256').update(b).digest('hex');
const sha1 = (b: Buffer) => crypto.createHash('sha1').update(b).digest('hex');

/** How the fake hub misbehaves for model.safetensors. */
const faults = { cutOnce: false, tamper: false };
let gets = 0;

const server = http.createServer((req, res) => {
  const url = decodeURIComponent(req.url ?? '');
  if (req.headers.authorization !== undefined && req.headers.authorization !== 'Bearer good-token') return void res.writeHead(401).end();
  const api = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/(.+)$/.exec(url);
  if (api) {
    if (api[1] === 'org/gated' && !req.headers.authorization) return void res.writeHead(401).end('{"error":"gated"}');
    if (api[1] !== 'org/tiny' && api[1] !== 'org/gated') return void res.writeHead(404).end('{"error":"not found"}');
    return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: api[1], sha: COMMIT, siblings: siblings.map((rfilename) => ({ rfilename })) }));
  }
  const resolve = /^\/(org\/(?:tiny|gated))\/resolve\/([0-9a-f]{40})\/(.+)$/.exec(url);
  const body = resolve && resolve[2] === COMMIT ? files[resolve[3]!] : undefined;
  if (!body) return void res.writeHead(404).end();
  const lfs = resolve![3]!.endsWith('.safetensors');
  const meta = lfs ? { 'x-linked-etag': `"${sha256(body)}"`, 'x-linked-size': String(body.length), 'x-repo-commit': COMMIT } : { etag: `"${sha1(body)}"`, 'x-repo-commit': COMMIT };
  if (req.method === 'HEAD') return void res.writeHead(200, { ...meta, 'content-length': String(body.length) }).end();
  let served = faults.tamper && lfs ? Buffer.from(body.map((b, i) => (i === 100 ? b ^ 1 : b))) : body;
  const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
  const from = range ? Number(range[1]) : 0;
  served = served.subarray(from);
  res.writeHead(range ? 206 : 200, { ...meta, 'content-length': String(served.length) });
  if (lfs) gets++;
  if (lfs && faults.cutOnce) {
    faults.cutOnce = false;
    res.write(served.subarray(0, Math.floor(served.length / 2)));
    return void setTimeout(() => res.destroy(), 20);
  }
  res.end(served);
});

let env: NodeJS.ProcessEnv;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mgd-hub-'));
beforeAll(async () => {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  env = { HF_ENDPOINT: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, HF_HUB_CACHE: path.join(tmp, 'hub') };
});
afterAll(() => {
  server.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('model ids', () => {
  it.each([
    ['Qwen/Qwen2.5-Coder-1.5B', { repo: 'Qwen/Qwen2.5-Coder-1.5B', revision: 'main' }],
    ['org/name@v1.0', { repo: 'org/name', revision: 'v1.0' }],
    ['./models/x', null],
    ['/abs/path', null],
    ['org/model.gguf', null],
    ['a/b/c', null],
  ])('%s', (s, id) => expect(parseModelId(s)).toEqual(id));

  it('an id that is not cached says how to get it; HF_HUB_OFFLINE is named', () => {
    expect(() => resolveModelArg('org/absent', env)).toThrow(/nor in the Hugging Face cache.*mgd model pull org\/absent/);
    expect(() => resolveModelArg('org/absent', { ...env, HF_HUB_OFFLINE: '1' })).toThrow(/HF_HUB_OFFLINE/);
  });
});

describe('mgd model pull against a local hub', () => {
  it('resumes an interrupted download, then the model loads by its id from the cache', async () => {
    faults.cutOnce = true;
    await expect(pullModel('org/tiny', { env })).rejects.toThrow(/run the pull again to resume/);
    const blobs = path.join(env.HF_HUB_CACHE!, 'models--org--tiny', 'blobs');
    expect(fs.readdirSync(blobs).some((b) => b.endsWith('.incomplete'))).toBe(true);
    expect(cachedSnapshot({ repo: 'org/tiny', revision: 'main' }, env.HF_HUB_CACHE)).toBeNull(); // not complete: not cached

    const progress: number[] = [];
    const r = await pullModel('org/tiny', { env, onProgress: (p) => progress.push(p.done) });
    expect(r.commit).toBe(COMMIT);
    const weights = r.files.find((f) => f.name === 'model.safetensors')!;
    expect(weights.resumedFrom).toBeGreaterThan(0);
    expect(weights.resumedFrom).toBeLessThan(weights.bytes);
    expect(r.files.map((f) => f.name).sort()).toEqual(Object.keys(files).sort()); // no README, no onnx/
    expect(progress.length).toBeGreaterThan(0);
    for (const f of Object.keys(files)) expect(fs.readFileSync(path.join(r.dir, f)).equals(files[f]!)).toBe(true);
    expect(fs.lstatSync(path.join(r.dir, 'model.safetensors')).isSymbolicLink()).toBe(true);

    // a second pull finds everything in place
    const again = await pullModel('org/tiny', { env });
    expect(again.files.every((f) => f.cached)).toBe(true);

    const saved = process.env.HF_HUB_CACHE;
    process.env.HF_HUB_CACHE = env.HF_HUB_CACHE;
    try {
      expect(openModelDir('org/tiny').dir).toBe(r.dir);
      expect(openModelDir(`org/tiny@${COMMIT}`).dir).toBe(r.dir);
      const byId = await Engine.load({ model: 'org/tiny', threads: 1 });
      const byDir = await Engine.load({ model: source, threads: 1 });
      try {
        const req = { prefix: 'export function add(a: number, b: number) {\n  return ', suffix: '\n}\n', maxTokens: 8 };
        expect((await byId.complete(req)).text).toBe((await byDir.complete(req)).text);
      } finally {
        await byId.dispose();
        await byDir.dispose();
      }
    } finally {
      if (saved === undefined) delete process.env.HF_HUB_CACHE;
      else process.env.HF_HUB_CACHE = saved;
    }
    const listed = listCachedModels(env.HF_HUB_CACHE);
    expect(listed.find((m) => m.id === 'org/tiny')).toMatchObject({ refs: { main: COMMIT }, snapshots: [COMMIT] });
    expect(listed.find((m) => m.id === 'org/tiny')!.bytes).toBeGreaterThanOrEqual(files['model.safetensors']!.length);
  });

  it('rejects a download that does not match its sha256 and leaves nothing that looks complete', async () => {
    const cache = path.join(tmp, 'tampered');
    faults.tamper = true;
    try {
      await expect(pullModel('org/tiny', { env: { ...env, HF_HUB_CACHE: cache } })).rejects.toThrow(/does not match its sha256/);
    } finally {
      faults.tamper = false;
    }
    const dir = path.join(cache, 'models--org--tiny');
    expect(fs.readdirSync(path.join(dir, 'blobs')).filter((b) => b.length === 64)).toEqual([]); // no safetensors blob
    expect(fs.existsSync(path.join(dir, 'refs', 'main'))).toBe(false);
    expect(cachedSnapshot({ repo: 'org/tiny', revision: 'main' }, cache)).toBeNull();
  });

  it('`mgd model pull --json`: the result alone on stdout, progress as JSON lines on stderr (what the extension reads)', async () => {
    const cache = path.join(tmp, 'cli');
    const child = spawn(process.execPath, [path.resolve(import.meta.dirname, '../bin/mgd.js'), 'model', 'pull', 'org/tiny', '--json'], { env: { ...process.env, ...env, HF_HUB_CACHE: cache }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    expect(await new Promise((resolve) => child.on('close', resolve)), stderr).toBe(0);
    expect(JSON.parse(stdout)).toMatchObject({ id: 'org/tiny', commit: COMMIT });
    const events = stderr.split('\n').filter(Boolean).map(parsePullProgress);
    expect(events.length).toBeGreaterThan(0);
    expect(events.every((e) => e !== null)).toBe(true);
    // every file the pull fetched is reported finished
    const finished = new Set(events.filter((e) => e!.done === e!.total).map((e) => e!.file));
    expect(finished.has('model.safetensors')).toBe(true);
  });

  it('the language server pulls an id it is given that is not cached, with $/progress, then serves with it', async () => {
    const cache = path.join(tmp, 'lsp');
    const child = spawn(process.execPath, [path.resolve(import.meta.dirname, '../bin/mgd.js'), 'serve', '--stdio', '--threads', '1'], { env: { ...process.env, ...env, HF_HUB_CACHE: cache, MGD_CACHE_DIR: path.join(tmp, 'lsp-kv') }, stdio: ['pipe', 'pipe', 'pipe'] });
    const conn = createMessageConnection(new StreamMessageReader(child.stdout!), new StreamMessageWriter(child.stdin!));
    const progress: Array<{ kind: string; message?: string; percentage?: number }> = [];
    conn.onRequest('window/workDoneProgress/create', () => null);
    conn.onNotification('$/progress', (p: { value: { kind: string; message?: string; percentage?: number } }) => progress.push(p.value));
    conn.listen();
    try {
      const ws = path.resolve(import.meta.dirname, '../fixtures/repos/monitor-cases');
      const uri = pathToFileURL(path.join(ws, 'src/pulled.ts')).href;
      await conn.sendRequest('initialize', { processId: process.pid, rootUri: pathToFileURL(ws).href, capabilities: { window: { workDoneProgress: true } }, initializationOptions: { model: 'org/tiny', maxTokens: 4 } });
      await conn.sendNotification('initialized', {});
      await conn.sendNotification('textDocument/didOpen', { textDocument: { uri, languageId: 'typescript', version: 1, text: 'export const x = 1;\n' } });
      await conn.sendRequest('textDocument/inlineCompletion', { textDocument: { uri }, position: { line: 1, character: 0 }, context: { triggerKind: 1 } });
      const stats = await conn.sendRequest<{ model: { name: string; dir: string } | null }>('mgd/stats', {});
      expect(stats.model?.name).toBe('org/tiny');
      expect(stats.model?.dir).toBe(cachedSnapshot({ repo: 'org/tiny', revision: 'main' }, cache));
      expect(progress[0], JSON.stringify(progress)).toMatchObject({ kind: 'begin', message: 'pulling the model', percentage: 0 });
      const reports = progress.filter((p) => p.kind === 'report');
      expect(reports.some((p) => p.message?.includes('model.safetensors'))).toBe(true);
      expect(reports.every((p) => p.percentage !== undefined && p.percentage >= 0 && p.percentage <= 100)).toBe(true);
      await conn.sendRequest('shutdown');
      await conn.sendNotification('exit');
    } finally {
      conn.dispose();
      child.kill();
    }
  });

  it('goes through the proxy the environment names (HTTP_PROXY), and not where NO_PROXY says', async () => {
    // a forward proxy: CONNECT tunnels (undici's default) and absolute-form requests, each counted
    let through = 0;
    const proxy = http.createServer((req, res) => {
      through++;
      const up = http.request(req.url!, { method: req.method, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode!, r.headers);
        r.pipe(res);
      });
      req.pipe(up);
    });
    proxy.on('connect', (req, client: net.Socket, head: Buffer) => {
      through++;
      const [host, port] = req.url!.split(':');
      const upstream = net.connect(Number(port), host, () => {
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        upstream.write(head);
        upstream.pipe(client);
        client.pipe(upstream);
      });
      upstream.on('error', () => client.destroy());
      client.on('error', () => upstream.destroy());
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    try {
      const HTTP_PROXY = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
      const r = await pullModel('org/tiny', { env: { ...env, HTTP_PROXY, HF_HUB_CACHE: path.join(tmp, 'proxied') } });
      expect(r.commit).toBe(COMMIT);
      expect(through).toBeGreaterThan(0);
      const before = through;
      await pullModel('org/tiny', { env: { ...env, HTTP_PROXY, NO_PROXY: '127.0.0.1', HF_HUB_CACHE: path.join(tmp, 'unproxied') } });
      expect(through).toBe(before);
    } finally {
      proxy.closeAllConnections();
      proxy.close();
    }
  });

  it('says in one line what is wrong: unknown id, gated without a token, no network, offline', async () => {
    await expect(pullModel('org/nope', { env })).rejects.toThrow(/has no model information for org\/nope/);
    await expect(pullModel('org/gated', { env })).rejects.toThrow(/gated or private.*HF_TOKEN/);
    await expect(pullModel('org/gated', { env: { ...env, HF_TOKEN: 'good-token', HF_HUB_CACHE: path.join(tmp, 'gated') } })).resolves.toMatchObject({ commit: COMMIT });
    await expect(pullModel('org/tiny', { env: { ...env, HF_ENDPOINT: 'http://127.0.0.1:9' } })).rejects.toThrow(/cannot reach http:\/\/127\.0\.0\.1:9/);
    await expect(pullModel('org/tiny', { env: { ...env, HF_HUB_OFFLINE: '1' } })).rejects.toThrow(/HF_HUB_OFFLINE/);
    await expect(pullModel('not an id', { env })).rejects.toThrow(/not a Hugging Face model id/);
    expect(gets).toBeGreaterThan(0);
  });
});
