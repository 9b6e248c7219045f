/**
 * The language server through its whole lifecycle, with a real JSON-RPC client over stdio against the real
 * `mgd serve --stdio` process: initialize, didOpen, inlineCompletion, incremental didChange, completion,
 * cancellation, shutdown, exit.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CancellationTokenSource, createMessageConnection, StreamMessageReader, StreamMessageWriter, type MessageConnection } from 'vscode-jsonrpc/node';
import { ensureFixtureModel } from '../engine/model/fixtures.js';

const root = path.resolve(import.meta.dirname, '..');
const workspace = path.join(root, 'fixtures/repos/monitor-cases');
const uri = pathToFileURL(path.join(workspace, 'src/typing.ts')).href;
const TEXT = `import { Account } from './model.js';\nexport function f(acc: Account) {\n  return acc.\n}\n`;

let child: ChildProcess;
let conn: MessageConnection;
const logs: string[] = [];

beforeAll(async () => {
  child = spawn(process.execPath, [path.join(root, 'bin/mgd.js'), 'serve', '--stdio', '--model', ensureFixtureModel('tiny'), '--threads', '2'], { stdio: ['pipe', 'pipe', 'pipe'] });
  conn = createMessageConnection(new StreamMessageReader(child.stdout!), new StreamMessageWriter(child.stdin!));
  conn.onNotification('window/logMessage', (p: { message: string }) => logs.push(p.message));
  conn.listen();
});
afterAll(() => {
  conn?.dispose();
  child?.kill();
});

describe('mgd serve --stdio', () => {
  it('initializes with inline completion, incremental sync and completion', async () => {
    const r = await conn.sendRequest<{ capabilities: Record<string, unknown> }>('initialize', {
      processId: process.pid,
      rootUri: pathToFileURL(workspace).href,
      workspaceFolders: [{ uri: pathToFileURL(workspace).href, name: 'ws' }],
      capabilities: {},
      initializationOptions: { maxTokens: 8 },
    });
    expect(r.capabilities.inlineCompletionProvider).toBe(true);
    expect(r.capabilities.textDocumentSync).toBe(2);
    expect(r.capabilities.completionProvider).toBeTruthy();
    await conn.sendNotification('initialized', {});
    await conn.sendNotification('textDocument/didOpen', { textDocument: { uri, languageId: 'typescript', version: 1, text: TEXT } });
  });

  it('answers inlineCompletion at a member access with a member of the receiver (monitors on)', async () => {
    const r = await conn.sendRequest<{ items: Array<{ insertText: string; range: unknown }> }>('textDocument/inlineCompletion', {
      textDocument: { uri },
      position: { line: 2, character: 13 },
      context: { triggerKind: 1 },
    });
    expect(r.items.length).toBe(1);
    const member = /^[A-Za-z_$][\w$]*/.exec(r.items[0]!.insertText)?.[0] ?? '';
    // with 8 tokens of a random model the identifier may be unfinished: it must then be a prefix of a member
    expect(['balance', 'deposit', 'id', 'owner', 'withdraw'].some((m) => m.startsWith(member) && member.length > 0)).toBe(true);
  });

  it('answers from the shown completion when the user types through it (no model run)', async () => {
    const first = await conn.sendRequest<{ items: Array<{ insertText: string }> }>('textDocument/inlineCompletion', {
      textDocument: { uri },
      position: { line: 2, character: 13 },
      context: { triggerKind: 1 },
    });
    const shown = first.items[0]!.insertText;
    expect(shown.length).toBeGreaterThan(1);
    await conn.sendNotification('textDocument/didChange', {
      textDocument: { uri, version: 10 },
      contentChanges: [{ range: { start: { line: 2, character: 13 }, end: { line: 2, character: 13 } }, text: shown[0] }],
    });
    const before = await conn.sendRequest<{ typedThrough: number }>('mgd/stats');
    const next = await conn.sendRequest<{ items: Array<{ insertText: string }> }>('textDocument/inlineCompletion', {
      textDocument: { uri },
      position: { line: 2, character: 14 },
      context: { triggerKind: 2 },
    });
    expect(next.items[0]!.insertText).toBe(shown.slice(1));
    expect((await conn.sendRequest<{ typedThrough: number }>('mgd/stats')).typedThrough).toBe(before.typedThrough + 1);
    // undo the typed character for the next test
    await conn.sendNotification('textDocument/didChange', {
      textDocument: { uri, version: 11 },
      contentChanges: [{ range: { start: { line: 2, character: 13 }, end: { line: 2, character: 14 } }, text: '' }],
    });
  });

  it('prefills a document in the background on open and on mgd/didFocus, and the next request reuses it', async () => {
    type Stats = { prefetches: number; prefetchedTokens: number };
    const stats = () => conn.sendRequest<Stats>('mgd/stats');
    const until = async (ok: (s: Stats) => boolean) => {
      for (let i = 0; i < 400; i++) {
        const s = await stats();
        if (ok(s)) return s;
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`condition never held: ${JSON.stringify(await stats())}`);
    };
    // text no earlier run has seen (the KV cache persists between runs)
    const other = pathToFileURL(path.join(workspace, 'src/use.ts')).href;
    const text = `// prefetch ${Date.now()} ${Math.random()}\n${TEXT}const total = [1, 2, 3].map((n) => n * 2);\n`;
    const before = await stats();
    await conn.sendNotification('textDocument/didOpen', { textDocument: { uri: other, languageId: 'typescript', version: 1, text } });
    const opened = await until((s) => s.prefetches > before.prefetches);
    expect(opened.prefetchedTokens).toBeGreaterThan(before.prefetchedTokens);
    // focus at the member access: only the text between the file's start and the cursor is new
    await conn.sendNotification('mgd/didFocus', { textDocument: { uri: other }, position: { line: 3, character: 13 } });
    const focused = await until((s) => s.prefetches > opened.prefetches);
    expect(focused.prefetchedTokens - opened.prefetchedTokens).toBeGreaterThan(0);
    const r = await conn.sendRequest<{ items: Array<{ insertText: string }> }>('textDocument/inlineCompletion', {
      textDocument: { uri: other },
      position: { line: 3, character: 13 },
      context: { triggerKind: 1 },
    });
    // (an invoked request shows up to three clean candidates: how many the verifier finds in its budget varies)
    expect(r.items.length).toBeGreaterThanOrEqual(1);
    expect(r.items.length).toBeLessThanOrEqual(3);
    // the request reused what the two prefetches computed: everything before the cursor (the healed `.` aside,
    // which the request re-tokenizes, hence the few tokens of slack)
    const after = await conn.sendRequest<{ lastReusedTokens: number; lastPromptTokens: number }>('mgd/stats');
    expect(after.lastReusedTokens).toBeGreaterThanOrEqual(focused.prefetchedTokens - before.prefetchedTokens - 4);
    expect(after.lastReusedTokens).toBeLessThan(after.lastPromptTokens);
    // focus on an unknown document, or with a broken position: ignored, the server keeps answering
    await conn.sendNotification('mgd/didFocus', { textDocument: { uri: 'file:///nowhere.ts' }, position: { line: 0, character: 0 } });
    await conn.sendNotification('mgd/didFocus', { textDocument: { uri: other }, position: { line: -1, character: 'x' } });
    await conn.sendNotification('mgd/didFocus', null);
    expect((await stats()).prefetches).toBeGreaterThanOrEqual(focused.prefetches);
    await conn.sendNotification('textDocument/didClose', { textDocument: { uri: other } });
  });

  it('follows incremental edits and answers textDocument/completion with a textEdit', async () => {
    await conn.sendNotification('textDocument/didChange', {
      textDocument: { uri, version: 2 },
      contentChanges: [{ range: { start: { line: 2, character: 13 }, end: { line: 2, character: 13 } }, text: 'ba' }],
    });
    const r = await conn.sendRequest<{ items: Array<{ textEdit: { newText: string; range: { start: { character: number } } } }> }>('textDocument/completion', {
      textDocument: { uri },
      position: { line: 2, character: 15 },
    });
    expect(r.items.length).toBe(1);
    expect(r.items[0]!.textEdit.range.start.character).toBe(15);
    expect('balance'.startsWith('ba' + r.items[0]!.textEdit.newText.replace(/[^\w$].*$/s, ''))).toBe(true);
  });

  it('a cancelled request answers RequestCancelled or nothing, and the server keeps answering', async () => {
    const source = new CancellationTokenSource();
    const p = conn.sendRequest('textDocument/inlineCompletion', { textDocument: { uri }, position: { line: 2, character: 15 }, context: { triggerKind: 2 } }, source.token);
    source.cancel();
    await p.then(
      (r) => expect(r === null || (r as { items: unknown[] }).items.length >= 0).toBe(true),
      (e: { code?: number }) => expect(e.code).toBe(-32800),
    );
    const again = await conn.sendRequest<{ items: unknown[] }>('textDocument/inlineCompletion', { textDocument: { uri }, position: { line: 2, character: 15 }, context: { triggerKind: 1 } });
    expect(Array.isArray(again.items)).toBe(true);
  });

  it('takes settings from didChangeConfiguration and counts accepts', async () => {
    await conn.sendNotification('workspace/didChangeConfiguration', { settings: { mgd: { maxTokens: 2, monitors: false } } });
    await conn.sendNotification('textDocument/didChange', { textDocument: { uri, version: 20 }, contentChanges: [{ text: TEXT.replace('acc.', 'acc.x') }] });
    await conn.sendRequest('textDocument/inlineCompletion', { textDocument: { uri }, position: { line: 2, character: 14 }, context: { triggerKind: 1 } });
    let stats = await conn.sendRequest<{ lastTokens: number; lastMonitorTriggers: number; accepted: number }>('mgd/stats');
    expect(stats.lastTokens).toBeLessThanOrEqual(2);
    expect(stats.lastMonitorTriggers).toBe(0);
    await conn.sendNotification('mgd/didAccept', { uri, kind: 'full' });
    stats = await conn.sendRequest('mgd/stats');
    expect(stats.accepted).toBe(1);
    await conn.sendNotification('workspace/didChangeConfiguration', { settings: { mgd: { maxTokens: 'lots', monitors: true } } }); // invalid maxTokens ignored
    await conn.sendNotification('textDocument/didChange', { textDocument: { uri, version: 21 }, contentChanges: [{ text: TEXT }] });
  });

  it('unknown documents and methods do not break it', async () => {
    const r = await conn.sendRequest('textDocument/inlineCompletion', { textDocument: { uri: 'file:///nowhere.ts' }, position: { line: 0, character: 0 }, context: { triggerKind: 1 } });
    expect(r).toBeNull();
    await expect(conn.sendRequest('mgd/noSuchMethod', {})).rejects.toMatchObject({ code: -32601 });
  });

  it('shuts down and exits with code 0', async () => {
    await conn.sendRequest('shutdown');
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    await conn.sendNotification('exit');
    expect(await exited).toBe(0);
    expect(logs.filter((l) => /could not be loaded|failed/.test(l))).toEqual([]);
  });
});

describe('mgd serve --stdio with a model that cannot load', () => {
  it('stays up, logs why, and answers empty results', async () => {
    const proc = spawn(process.execPath, [path.join(root, 'bin/mgd.js'), 'serve', '--stdio', '--model', '/nonexistent/model'], { stdio: ['pipe', 'pipe', 'pipe'] });
    const c = createMessageConnection(new StreamMessageReader(proc.stdout!), new StreamMessageWriter(proc.stdin!));
    const messages: string[] = [];
    c.onNotification('window/logMessage', (p: { message: string }) => messages.push(p.message));
    c.listen();
    try {
      await c.sendRequest('initialize', { processId: process.pid, rootUri: null, capabilities: {} });
      await c.sendNotification('initialized', {});
      await c.sendNotification('textDocument/didOpen', { textDocument: { uri, languageId: 'typescript', version: 1, text: TEXT } });
      const r = await c.sendRequest('textDocument/inlineCompletion', { textDocument: { uri }, position: { line: 2, character: 13 }, context: { triggerKind: 1 } });
      expect(r).toEqual({ items: [] });
      const list = await c.sendRequest<{ items: unknown[] }>('textDocument/completion', { textDocument: { uri }, position: { line: 2, character: 13 } });
      expect(list.items).toEqual([]);
      expect(messages.some((m) => /could not be loaded.*nonexistent/.test(m))).toBe(true);
      await c.sendRequest('shutdown');
    } finally {
      c.dispose();
      proc.kill();
    }
  });
});
