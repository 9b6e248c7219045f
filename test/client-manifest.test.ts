/**
 * The VS Code extension's manifest (client/package.json) against what the extension and the server really do,
 * without building anything: its settings are the ones in client/src/contract.ts, the server-side ones are exactly
 * what the server reads (checked through the server's own applySettings), the launch ones are arguments that
 * `mgd serve --stdio` accepts, the commands are the ones the extension registers.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createMessageConnection, StreamMessageReader, StreamMessageWriter } from 'vscode-jsonrpc/node';
import { ensureFixtureModel } from '../engine/model/fixtures.js';
import { MONITOR_KINDS } from '../engine/engine.js';
import { CompletionRunner } from '../server/lsp/completion-runner.js';
import { applySettings, MAX_CONTEXT_TOKENS } from '../server/lsp/server.js';
import * as contract from '../client/src/contract.js';
import { COMMANDS, DEFAULTS, findNodeOnPath, findServerDir, formatStats, isModelLoadFailure, readSettings, serverCommand, serverSettings, SETTINGS } from '../client/src/contract.js';

const root = path.resolve(import.meta.dirname, '..');
const manifest = JSON.parse(fs.readFileSync(path.join(root, 'client/package.json'), 'utf8')) as {
  main: string;
  engines: { vscode: string };
  activationEvents: string[];
  contributes: {
    configuration: {
      properties: Record<string, { type: string | string[]; default: unknown; minimum?: number; maximum?: number; enum?: string[]; properties?: Record<string, { type: string; default: unknown }> }>;
    };
    commands: Array<{ command: string; title: string; category?: string }>;
  };
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};
const properties = manifest.contributes.configuration.properties;
const serverKeys = Object.entries(SETTINGS).filter(([, t]) => t === 'server').map(([k]) => k.slice('mgd.'.length));
const newRunner = () => new CompletionRunner({}, () => {});

describe('client/package.json', () => {
  it('loads the bundle after startup, not on every event', () => {
    expect(manifest.main).toBe('./dist/extension.js');
    expect(manifest.activationEvents).toEqual(['onStartupFinished']);
    expect(manifest.engines.vscode).toMatch(/^\^1\.\d+\.\d+$/);
    // the bundle carries the client library; the editor's API comes from the editor
    expect(Object.keys(manifest.dependencies)).toEqual(['vscode-languageclient']);
    expect(manifest.devDependencies['@vscode/vsce']).toBeDefined();
    // @types/vscode must not promise API newer than the editors the manifest accepts
    expect(manifest.devDependencies['@types/vscode']!.replace(/^[~^]/, '')).toBe(manifest.engines.vscode.slice(1));
  });

  it('contributes exactly the settings the extension knows, with its defaults', () => {
    expect(Object.keys(properties).sort()).toEqual(Object.keys(SETTINGS).sort());
    for (const [key, value] of Object.entries(DEFAULTS)) expect(properties[`mgd.${key}`]?.default, `mgd.${key}`).toEqual(value);
    expect(readSettings((k) => properties[`mgd.${k}`]?.default)).toEqual(DEFAULTS);
  });

  it('maps the server-side settings to exactly what the server reads, under the same names and defaults', () => {
    const runner = newRunner();
    expect(Object.keys(runner.settings).sort()).toEqual([...serverKeys].sort());
    expect(Object.keys(serverSettings(DEFAULTS)).sort()).toEqual([...serverKeys].sort());
    expect(runner.settings).toEqual(serverSettings(DEFAULTS));
    // the server takes each one by that name (a value other than the default must change it)
    for (const key of serverKeys) {
      const p = properties[`mgd.${key}`]!;
      const other =
        p.type === 'boolean' ? !p.default : p.type === 'object' ? Object.fromEntries(Object.keys(p.properties!).map((k) => [k, !(p.default as Record<string, boolean>)[k]])) : p.maximum;
      expect(other, key).not.toEqual(p.default);
      const r = newRunner();
      applySettings(r, { [key]: other });
      expect((r.settings as unknown as Record<string, unknown>)[key], key).toEqual(other);
    }
  });

  it("lists the engine's monitor kinds, each on by default", () => {
    const p = properties['mgd.monitorKinds']!;
    expect(Object.keys(p.properties!)).toEqual([...MONITOR_KINDS]);
    expect(contract.MONITOR_KINDS).toEqual(MONITOR_KINDS);
    expect(p.default).toEqual(Object.fromEntries(MONITOR_KINDS.map((k) => [k, true])));
    for (const k of MONITOR_KINDS) expect(p.properties![k]).toMatchObject({ type: 'boolean', default: true });
  });

  it('takes monitorKinds whole: kinds left out are on, unknown kinds and non-objects are ignored', () => {
    const r = newRunner();
    applySettings(r, { monitorKinds: { dereference: false, 'switch-enum': false, teleport: false } });
    expect(r.settings.monitorKinds).toEqual({ dereference: false, 'call-arity': true, callable: true, 'scope-names': true, 'new-class': true, 'import-names': true, 'switch-enum': false, brackets: true, 'line-end': true });
    applySettings(r, { monitorKinds: ['dereference'] });
    applySettings(r, { monitorKinds: null });
    applySettings(r, { maxTokens: 10 });
    expect(r.settings.monitorKinds.dereference).toBe(false);
    applySettings(r, { monitorKinds: { 'call-arity': false } });
    expect(r.settings.monitorKinds).toEqual({ dereference: true, 'call-arity': false, callable: true, 'scope-names': true, 'new-class': true, 'import-names': true, 'switch-enum': true, brackets: true, 'line-end': true });
    // the extension reads it the same way
    expect(readSettings((k) => (k === 'monitorKinds' ? { 'call-arity': false, teleport: false } : undefined)).monitorKinds).toEqual(r.settings.monitorKinds);
  });

  it('bounds contextTokens as the server does, null meaning the default', () => {
    const p = properties['mgd.contextTokens']!;
    expect([p.minimum, p.maximum]).toEqual([0, MAX_CONTEXT_TOKENS]);
    expect(contract.MAX_CONTEXT_TOKENS).toBe(MAX_CONTEXT_TOKENS);
    expect(p.type).toEqual(['integer', 'null']);
    for (const [value, taken] of [
      [0, true],
      [p.maximum!, true],
      [-1, false],
      [p.maximum! + 1, false],
      [1.5, false],
      ['100', false],
    ] as const) {
      const r = newRunner();
      applySettings(r, { contextTokens: 5 });
      applySettings(r, { contextTokens: value });
      expect(r.settings.contextTokens, `contextTokens ${value}`).toBe(taken ? value : 5);
      expect(readSettings((k) => (k === 'contextTokens' ? value : undefined)).contextTokens, `client: contextTokens ${value}`).toBe(taken ? value : null);
    }
    const r = newRunner();
    applySettings(r, { contextTokens: 5 });
    applySettings(r, { contextTokens: null });
    expect(r.settings.contextTokens).toBeNull();
  });

  it('bounds maxTokens as the server does', () => {
    const p = properties['mgd.maxTokens']!;
    for (const [value, taken] of [
      [p.minimum!, true],
      [p.maximum!, true],
      [p.minimum! - 1, false],
      [p.maximum! + 1, false],
    ] as const) {
      const r = newRunner();
      applySettings(r, { maxTokens: value });
      expect(r.settings.maxTokens === value, `maxTokens ${value}`).toBe(taken);
    }
  });

  it('lists the weight formats the server accepts', () => {
    expect(properties['mgd.weights']!.enum).toEqual(['f32', 'q8', 'q4', 'f16']);
  });

  it('contributes exactly the commands the extension registers, in the mgd category', () => {
    expect(manifest.contributes.commands.map((c) => c.command).sort()).toEqual(Object.keys(COMMANDS).sort());
    for (const c of manifest.contributes.commands) {
      expect(c.title).toBe(COMMANDS[c.command as keyof typeof COMMANDS]);
      expect(c.category).toBe('mgd');
    }
  });
});

describe('client/src/contract.ts', () => {
  it('ignores invalid settings', () => {
    const bad: Record<string, unknown> = { enable: 'yes', maxTokens: 0, monitors: 1, monitorKinds: 'none', contextTokens: -5, model: 3, weights: 'q2', threads: -1, nodePath: null, debounceMs: 2.5 };
    expect(readSettings((k) => bad[k])).toEqual(DEFAULTS);
  });

  it('builds the server command line from the launch settings; mgd serve --stdio accepts it', async () => {
    const host = { nodeOnPath: process.execPath, execPath: '/opt/editor/code', env: { PATH: '/bin' } };
    const plain = serverCommand(DEFAULTS, root, host);
    expect(plain.command).toBe(process.execPath);
    expect(plain.args).toEqual([path.join(root, 'bin/mgd.js'), 'serve', '--stdio']);
    const model = ensureFixtureModel('tiny');
    const custom = serverCommand({ ...DEFAULTS, model, weights: 'q8', threads: 2 }, root, host);
    expect(custom.args.slice(3)).toEqual(['--model', model, '--weights', 'q8', '--threads', '2']);
    // the real server takes these arguments through a whole session (the model is loaded only after initialized)
    const child = spawn(custom.command, custom.args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    const conn = createMessageConnection(new StreamMessageReader(child.stdout), new StreamMessageWriter(child.stdin));
    conn.listen();
    const died = exited.then((code) => Promise.reject(new Error(`mgd serve exited with ${code} before initialize: ${stderr}`)));
    const init = await Promise.race([
      conn.sendRequest<{ capabilities: { inlineCompletionProvider?: unknown } }>('initialize', { processId: process.pid, rootUri: null, capabilities: {}, initializationOptions: serverSettings(DEFAULTS) }),
      died,
    ]);
    expect(init.capabilities.inlineCompletionProvider).toBe(true);
    await conn.sendRequest('shutdown');
    await conn.sendNotification('exit');
    expect(await exited, stderr).toBe(0);
    conn.dispose();
  });

  it('runs the server with nodePath, else node on PATH, else the editor as Node', () => {
    const host = { nodeOnPath: null, execPath: '/opt/editor/code', env: { PATH: '/bin' } };
    expect(serverCommand({ ...DEFAULTS, nodePath: '/usr/local/bin/node' }, root, host).command).toBe('/usr/local/bin/node');
    const editor = serverCommand(DEFAULTS, root, host);
    expect(editor.command).toBe('/opt/editor/code');
    expect(editor.env.ELECTRON_RUN_AS_NODE).toBe('1');
    expect(serverCommand(DEFAULTS, root, { ...host, nodeOnPath: '/usr/bin/node' }).env.ELECTRON_RUN_AS_NODE).toBeUndefined();
  });

  it('finds node on PATH, and nothing on an empty PATH', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mgd-path-'));
    try {
      const node = path.join(dir, process.platform === 'win32' ? 'node.exe' : 'node');
      fs.writeFileSync(node, '');
      expect(findNodeOnPath({ PATH: ['/nonexistent', dir].join(path.delimiter) })).toBe(node);
      expect(findNodeOnPath({ PATH: '' })).toBeNull();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('finds the server of a development checkout (the built root) and of a packaged extension (server/)', () => {
    expect(findServerDir(path.join(root, 'client'))).toBe(root);
    const ext = fs.mkdtempSync(path.join(os.tmpdir(), 'mgd-ext-'));
    try {
      expect(findServerDir(ext)).toBeNull();
      fs.mkdirSync(path.join(ext, 'server/bin'), { recursive: true });
      fs.mkdirSync(path.join(ext, 'server/dist/server'), { recursive: true });
      fs.writeFileSync(path.join(ext, 'server/bin/mgd.js'), '');
      expect(findServerDir(ext)).toBeNull(); // not built
      fs.writeFileSync(path.join(ext, 'server/dist/server/cli.js'), '');
      expect(findServerDir(ext)).toBe(path.join(ext, 'server'));
    } finally {
      fs.rmSync(ext, { recursive: true, force: true });
    }
  });

  it("recognizes the server's log line for a model that cannot be loaded (the status bar turns to error on it)", async () => {
    const lines: string[] = [];
    const runner = new CompletionRunner({ model: path.join(os.tmpdir(), 'mgd-no-such-model') }, (m) => lines.push(m));
    expect(await runner.load()).toBeNull();
    expect(lines.filter(isModelLoadFailure)).toHaveLength(1);
    expect(isModelLoadFailure('mgd: completion failed: something')).toBe(false);
  });

  it("formats the server's statistics one per line", async () => {
    expect(formatStats({ requests: 3, accepted: 1 })).toBe('accepted: 1\nrequests: 3');
    expect(formatStats({})).toBe('no statistics yet');
    // groups (the KV cache's counters) flattened; a group not there yet (null) left out
    expect(formatStats({ requests: 3, kvCache: { hits: 2, persisted: '/tmp/kv', blocks: 1 } })).toBe('kvCache.blocks: 1\nkvCache.hits: 2\nkvCache.persisted: /tmp/kv\nrequests: 3');
    expect(formatStats({ requests: 0, kvCache: null })).toBe('requests: 0');
    expect(Object.keys(newRunner().stats)).toContain('accepted');
  });
});

describe('client/src/contract.ts: the model picker and the status bar', () => {
  const models: contract.CachedModel[] = [
    { id: 'Qwen/Qwen2.5-Coder-1.5B', bytes: 3_100_000_000, refs: { main: 'abc' }, snapshots: ['abc'] },
    { id: 'Qwen/Qwen2.5-Coder-0.5B', bytes: 990_000_000, refs: { main: 'def' }, snapshots: ['def'] },
  ];

  it('lists the embedded model, the cached ones sorted with their size, then pull and folder', () => {
    const picks = contract.modelPicks(models, '');
    expect(picks.map((p) => p.kind)).toEqual(['model', 'model', 'model', 'pull', 'folder', 'file']);
    expect(picks.filter((p) => p.kind === 'model').map((p) => (p as { value: string }).value)).toEqual(['', 'Qwen/Qwen2.5-Coder-0.5B', 'Qwen/Qwen2.5-Coder-1.5B']);
    expect(picks[1]!.description).toContain('990 MB');
    expect(picks[2]!.description).toContain('3.1 GB');
    expect(picks.filter((p) => p.kind === 'model' && p.current).map((p) => p.label)).toEqual(['Embedded model']);
  });

  it('lists Ollama\'s models after the cache\'s, by the name --model takes, the current one marked', () => {
    const ollama = [{ id: 'ollama:qwen2.5-coder:1.5b', file: '/o/blobs/sha256-1', bytes: 986_000_000 }];
    const picks = contract.modelPicks(models, 'ollama:qwen2.5-coder:1.5b', ollama);
    const listed = picks.filter((p) => p.kind === 'model');
    expect(listed.map((p) => (p as { value: string }).value)).toEqual(['', 'Qwen/Qwen2.5-Coder-0.5B', 'Qwen/Qwen2.5-Coder-1.5B', 'ollama:qwen2.5-coder:1.5b']);
    expect(listed.at(-1)).toMatchObject({ current: true, description: expect.stringContaining('GGUF from Ollama') });
    expect(listed.filter((p) => (p as { current: boolean }).current)).toHaveLength(1);
  });

  it('marks the current model (a revision too), and keeps a current path choosable', () => {
    const byId = contract.modelPicks(models, 'Qwen/Qwen2.5-Coder-1.5B@main');
    expect(byId.filter((p) => p.kind === 'model' && p.current).map((p) => p.label)).toEqual(['Qwen/Qwen2.5-Coder-1.5B']);
    const byPath = contract.modelPicks(models, '/models/mine');
    const current = byPath.filter((p) => p.kind === 'model' && p.current);
    expect(current).toEqual([{ kind: 'model', label: '/models/mine', description: 'the current setting', value: '/models/mine', current: true }]);
  });

  it('takes ids as `mgd model pull` does', () => {
    expect(contract.parseModelIdInput(' Qwen/Qwen2.5-Coder-0.5B ')).toBe('Qwen/Qwen2.5-Coder-0.5B');
    expect(contract.parseModelIdInput('org/name@v1.0')).toBe('org/name@v1.0');
    for (const bad of ['', 'qwen', '/abs/path', 'a/b/c', '../x/y', 'org/name with space']) expect(contract.parseModelIdInput(bad), bad).toBeNull();
  });

  it('reads the pull progress lines and nothing else', () => {
    expect(contract.parsePullProgress('{"progress":true,"file":"model.safetensors","done":5,"total":10,"files":1,"of":4}')).toEqual({ file: 'model.safetensors', done: 5, total: 10, files: 1, of: 4 });
    for (const other of ['mgd: Qwen/x is gated', '{"id":"Qwen/x"}', 'not json', '{"progress":true,"file":3}']) expect(contract.parsePullProgress(other), other).toBeNull();
  });

  it('names the model and backend once ready, and nothing before the model loads', () => {
    const label = contract.readyLabel({ model: { name: 'Qwen/Qwen2.5-Coder-0.5B', dir: '/x' }, backend: { name: 'onnx', device: 'cpu (2 threads)', weights: 'q8' } });
    expect(label).toEqual({ text: 'Qwen2.5-Coder-0.5B · onnx q8', tooltip: 'model Qwen/Qwen2.5-Coder-0.5B on onnx q8 (cpu (2 threads))' });
    expect(contract.readyLabel({ model: null, backend: null })).toBeNull();
    expect(contract.readyLabel(null)).toBeNull();
  });

  it('runs the CLI with the server\'s runtime', () => {
    const host = { nodeOnPath: '/usr/bin/node', execPath: '/opt/code/code', env: {} };
    const cli = contract.cliCommand(DEFAULTS, '/srv/mgd', host, ['model', 'list', '--json']);
    const server = serverCommand(DEFAULTS, '/srv/mgd', host);
    expect(cli.command).toBe(server.command);
    expect(cli.args).toEqual([path.join('/srv/mgd', 'bin', 'mgd.js'), 'model', 'list', '--json']);
    expect(server.args.slice(1)).toEqual(['serve', '--stdio']);
  });
});
