/**
 * `mgd serve --socket PORT` and `--pipe NAME`, the way VS Code's language client runs a server over them: the client
 * listens, starts the server with the port or pipe, and the server connects. A vscode-languageserver-protocol client
 * drives each through initialize, inlineCompletion, settings, mgd/stats (with the KV cache's counters), shutdown
 * and exit; the KV cache is persisted between runs unless --no-persist-cache. Also: exactly one transport, and a
 * client that is not there or goes away.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import {
  createClientPipeTransport,
  createClientSocketTransport,
  createProtocolConnection,
  DidChangeConfigurationNotification,
  DidOpenTextDocumentNotification,
  ExitNotification,
  generateRandomPipeName,
  InitializedNotification,
  InitializeRequest,
  InlineCompletionRequest,
  InlineCompletionTriggerKind,
  ShutdownRequest,
  StreamMessageReader,
  StreamMessageWriter,
  type MessageReader,
  type MessageWriter,
  type ProtocolConnection,
} from 'vscode-languageserver-protocol/node';
import { ensureFixtureModel } from '../engine/model/fixtures.js';
import { main } from '../server/cli.js';

const root = path.resolve(import.meta.dirname, '..');
const workspace = path.join(root, 'fixtures/repos/monitor-cases');
const uri = pathToFileURL(path.join(workspace, 'src/transport.ts')).href;
// long enough for whole KV blocks (32 tokens) to be cached and persisted
const TEXT = `import { Account } from './model.js';\n${Array.from({ length: 12 }, (_, i) => `// line ${i} of a comment that gives the prompt some length\n`).join('')}export function f(acc: Account) {\n  return acc.\n}\n`;
const AT = { line: 14, character: 13 };

const cacheDirs: string[] = [];
afterAll(() => {
  for (const d of cacheDirs) fs.rmSync(d, { recursive: true, force: true });
});

interface Session {
  conn: ProtocolConnection;
  child: ChildProcess;
  exited: Promise<number | null>;
  stderr: () => string;
}

/** Starts `mgd serve <transport args>` after the client listens, as vscode-languageclient does, and connects. */
async function start(transportArgs: string[], listening: { onConnected(): Promise<[MessageReader, MessageWriter]> }, cacheDir: string, extra: string[] = []): Promise<Session> {
  const child = spawn(process.execPath, [path.join(root, 'bin/mgd.js'), 'serve', ...transportArgs, '--model', ensureFixtureModel('tiny'), '--threads', '2', ...extra], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, MGD_CACHE_DIR: cacheDir },
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const died = exited.then((code) => Promise.reject(new Error(`mgd serve exited with ${code} before connecting: ${stderr}`)));
  const [reader, writer] = await Promise.race([listening.onConnected(), died]);
  const conn = createProtocolConnection(reader, writer);
  conn.listen();
  return { conn, child, exited, stderr: () => stderr };
}

async function initialize(conn: ProtocolConnection, initializationOptions: unknown = { maxTokens: 8 }): Promise<void> {
  const r = await conn.sendRequest(InitializeRequest.type, {
    processId: process.pid,
    rootUri: pathToFileURL(workspace).href,
    workspaceFolders: [{ uri: pathToFileURL(workspace).href, name: 'ws' }],
    capabilities: {},
    initializationOptions,
  });
  expect(r.capabilities.inlineCompletionProvider).toBe(true);
  await conn.sendNotification(InitializedNotification.type, {});
  await conn.sendNotification(DidOpenTextDocumentNotification.type, { textDocument: { uri, languageId: 'typescript', version: 1, text: TEXT } });
}

async function inline(conn: ProtocolConnection): Promise<string> {
  const r = await conn.sendRequest(InlineCompletionRequest.type, { textDocument: { uri }, position: AT, context: { triggerKind: InlineCompletionTriggerKind.Invoked } });
  const items = Array.isArray(r) ? r : (r?.items ?? []);
  // invoked: the shown suggestion first, then up to two other clean candidates the checker found
  expect(items.length).toBeLessThanOrEqual(3);
  return (items[0]?.insertText as string | undefined) ?? '';
}

interface Stats {
  backend: { name: string; device: string; weights: string } | null;
  lastMonitorTriggers: number;
  requests: number;
  lastReusedTokens: number;
  kvCache: { blocks: number; bytes: number; budgetBytes: number; hits: number; misses: number; residentTokens: number; spliceCount: number; loadedBlocks: number; persisted: string | null } | null;
}

async function shutdown(s: Session): Promise<void> {
  await s.conn.sendRequest(ShutdownRequest.type);
  await s.conn.sendNotification(ExitNotification.type);
  expect(await s.exited, s.stderr()).toBe(0);
  s.conn.dispose();
}

describe('mgd serve --socket PORT', () => {
  const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mgd-kv-socket-'));
  cacheDirs.push(cacheDir);

  it('serves a whole session over the socket, with per-kind monitors and the KV cache in mgd/stats', async () => {
    const listening = await createClientSocketTransport(0);
    const s = await start([`--socket=${listening.port()}`], listening, cacheDir);
    try {
      // no repository context: the prompt is the same in the next run, whatever the workspace index holds by then
      await initialize(s.conn, { maxTokens: 8, contextTokens: 0 });
      const member = /^[A-Za-z_$][\w$]*/.exec(await inline(s.conn))?.[0] ?? '';
      expect(['balance', 'deposit', 'id', 'owner', 'withdraw'].some((m) => m.startsWith(member) && member.length > 0)).toBe(true);
      let stats = await s.conn.sendRequest<Stats>('mgd/stats');
      expect(stats.lastMonitorTriggers).toBeGreaterThan(0);
      expect(stats.backend).toMatchObject({ name: 'onnx', weights: 'f32' });
      // the KV cache's counters: the prompt is resident, and the cache persists under MGD_CACHE_DIR
      expect(stats.kvCache).not.toBeNull();
      expect(stats.kvCache!.residentTokens).toBeGreaterThan(32);
      expect(stats.kvCache!.budgetBytes).toBeGreaterThan(0);
      for (const k of ['blocks', 'bytes', 'hits', 'misses', 'spliceCount'] as const) expect(typeof stats.kvCache![k], k).toBe('number');
      expect(stats.kvCache!.persisted).toMatch(new RegExp(`^${cacheDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));

      // the member-access monitors off by kind (an unknown kind ignored): nothing triggers at `acc.`
      await s.conn.sendNotification(DidChangeConfigurationNotification.type, { settings: { mgd: { monitorKinds: { dereference: false, 'call-arity': false, 'no-such-kind': true } } } });
      await inline(s.conn);
      stats = await s.conn.sendRequest<Stats>('mgd/stats');
      expect(stats.lastMonitorTriggers).toBe(0);
      // and on again when the setting no longer names them
      await s.conn.sendNotification(DidChangeConfigurationNotification.type, { settings: { mgd: { monitorKinds: {} } } });
      await inline(s.conn);
      expect((await s.conn.sendRequest<Stats>('mgd/stats')).lastMonitorTriggers).toBeGreaterThan(0);
      await shutdown(s);
      expect(fs.existsSync(stats.kvCache!.persisted!), 'the KV cache file after shutdown').toBe(true);
    } finally {
      s.child.kill();
      listening.close();
    }
  });

  it('starts warm from the persisted KV cache on the next run', async () => {
    const listening = await createClientSocketTransport(0);
    const s = await start([`--socket=${listening.port()}`], listening, cacheDir);
    try {
      await initialize(s.conn, { maxTokens: 8, contextTokens: 0 });
      await inline(s.conn);
      const stats = await s.conn.sendRequest<Stats>('mgd/stats');
      // this process's first work found the last run's blocks: the prefetch on didOpen spliced them in (a cold
      // process has no blocks to hit), and the request reused that prefill
      expect(stats.requests).toBe(1);
      expect(stats.kvCache!.loadedBlocks).toBeGreaterThan(0);
      expect(stats.kvCache!.hits).toBeGreaterThanOrEqual(1);
      expect(stats.kvCache!.spliceCount).toBeGreaterThanOrEqual(1);
      expect(stats.lastReusedTokens).toBeGreaterThan(0);
      await shutdown(s);
    } finally {
      s.child.kill();
      listening.close();
    }
  });

  it('exits when the client goes away without shutdown', async () => {
    const listening = await createClientSocketTransport(0);
    const s = await start([`--socket=${listening.port()}`], listening, cacheDir);
    try {
      await initialize(s.conn);
      // our end of the socket closes: the server's stream ends, and it exits (1: no shutdown first)
      s.conn.end();
      s.conn.dispose();
      expect(await s.exited).toBe(1);
    } finally {
      s.child.kill();
    }
  });
});

describe('mgd serve --pipe NAME', () => {
  const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mgd-kv-pipe-'));
  cacheDirs.push(cacheDir);

  it('serves a whole session over the pipe; --no-persist-cache keeps nothing', async () => {
    const name = generateRandomPipeName();
    const listening = await createClientPipeTransport(name);
    const s = await start(['--pipe', name], listening, cacheDir, ['--no-persist-cache']);
    try {
      await initialize(s.conn, { maxTokens: 6, contextTokens: 0 });
      expect(typeof (await inline(s.conn))).toBe('string');
      const stats = await s.conn.sendRequest<Stats>('mgd/stats');
      expect(stats.requests).toBe(1);
      expect(stats.kvCache!.persisted).toBeNull();
      await shutdown(s);
      expect(fs.existsSync(path.join(cacheDir, 'kv'))).toBe(false);
    } finally {
      s.child.kill();
      listening.close();
    }
  });
});

describe('mgd serve: transports', () => {
  const run = async (args: string[]) => {
    let stderr = '';
    const code = await main(['serve', ...args], { stdout: () => {}, stderr: (t) => (stderr += t) });
    return { code, stderr };
  };

  it.each([[[]], [['--stdio', '--http']], [['--socket', '1', '--pipe', 'x']], [['--stdio', '--pipe', 'x']]])('needs exactly one transport: %j', async (args) => {
    const r = await run(args);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/exactly one of --stdio, --socket PORT, --pipe NAME \(LSP\) or --http/);
  });

  it('refuses a port that is not one', async () => {
    expect((await run(['--socket', 'x'])).code).toBe(2);
    expect((await run(['--socket', '70000'])).stderr).toMatch(/--socket must be a port/);
  });

  it('says in one line when no client listens there', async () => {
    const free = await new Promise<number>((resolve) => {
      const srv = net.createServer().listen(0, '127.0.0.1', () => {
        const { port } = srv.address() as net.AddressInfo;
        srv.close(() => resolve(port));
      });
    });
    const r = await run(['--socket', String(free)]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(new RegExp(`cannot connect to the LSP client at 127\\.0\\.0\\.1:${free}: ECONNREFUSED`));
    const p = await run(['--pipe', path.join(os.tmpdir(), 'mgd-no-such-pipe.sock')]);
    expect(p.code).toBe(2);
    expect(p.stderr).toMatch(/cannot connect to the LSP client at .*mgd-no-such-pipe\.sock: ENOENT/);
  });
});

describe('mgd serve --stdio --backend webgpu', () => {
  // stdout is the LSP stream: nothing else may reach it (Dawn prints uncaught validation errors there unless taken,
  // kernels/gpu.ts), and the monitors' masks apply on the device (MGD_WEBGPU_PICKS=device; llvmpipe would read the
  // row back by default)
  it('serves a monitored completion with the masks and the pick on the device', async () => {
    const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mgd-kv-webgpu-'));
    cacheDirs.push(cacheDir);
    const child = spawn(process.execPath, [path.join(root, 'bin/mgd.js'), 'serve', '--stdio', '--backend', 'webgpu', '--model', ensureFixtureModel('tiny'), '--no-persist-cache'], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, MGD_CACHE_DIR: cacheDir, MGD_WEBGPU_PICKS: 'device' },
    });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const conn = createProtocolConnection(new StreamMessageReader(child.stdout!), new StreamMessageWriter(child.stdin!));
    conn.listen();
    const s: Session = { conn, child, exited, stderr: () => stderr };
    try {
      await initialize(conn, { maxTokens: 8, contextTokens: 0 });
      const member = /^[A-Za-z_$][\w$]*/.exec(await inline(conn))?.[0] ?? '';
      expect(['balance', 'deposit', 'id', 'owner', 'withdraw'].some((m) => m.startsWith(member) && member.length > 0), `${member}; ${stderr}`).toBe(true);
      const stats = await conn.sendRequest<Stats>('mgd/stats');
      expect(stats.lastMonitorTriggers).toBeGreaterThan(0);
      expect(stats.backend?.name).toBe('webgpu');
      await shutdown(s);
    } finally {
      child.kill();
    }
  });
});
