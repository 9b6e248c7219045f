/**
 * The model named by the client (initializationOptions `model`), for editors that configure the server rather than
 * its command line: loaded where the command line names none; the command line's wins otherwise, said in the log.
 * mgd/stats names the model that runs (the status bar of the extension shows it).
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { createMessageConnection, StreamMessageReader, StreamMessageWriter } from 'vscode-jsonrpc/node';
import { ensureFixtureModel } from '../engine/model/fixtures.js';

const root = path.resolve(import.meta.dirname, '..');
const workspace = path.join(root, 'fixtures/repos/monitor-cases');
const uri = pathToFileURL(path.join(workspace, 'src/typing.ts')).href;

/** One session: initialize with `model`, complete once (which waits for the model), then mgd/stats. */
async function session(args: string[], model: string): Promise<{ stats: { model: { name: string; dir: string } | null }; logs: string[] }> {
  const child = spawn(process.execPath, [path.join(root, 'bin/mgd.js'), 'serve', '--stdio', '--threads', '2', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  const conn = createMessageConnection(new StreamMessageReader(child.stdout!), new StreamMessageWriter(child.stdin!));
  const logs: string[] = [];
  conn.onNotification('window/logMessage', (p: { message: string }) => logs.push(p.message));
  conn.listen();
  try {
    await conn.sendRequest('initialize', { processId: process.pid, rootUri: pathToFileURL(workspace).href, capabilities: {}, initializationOptions: { maxTokens: 4, model } });
    await conn.sendNotification('initialized', {});
    await conn.sendNotification('textDocument/didOpen', { textDocument: { uri, languageId: 'typescript', version: 1, text: 'export const x = 1;\n' } });
    await conn.sendRequest('textDocument/inlineCompletion', { textDocument: { uri }, position: { line: 1, character: 0 }, context: { triggerKind: 1 } });
    const stats = await conn.sendRequest<{ model: { name: string; dir: string } | null }>('mgd/stats', {});
    await conn.sendRequest('shutdown');
    await conn.sendNotification('exit');
    return { stats, logs };
  } finally {
    conn.dispose();
    child.kill();
  }
}

describe('the model from initializationOptions', () => {
  it('is loaded when the command line names none', async () => {
    const tiny = ensureFixtureModel('tiny');
    const { stats } = await session([], tiny);
    expect(stats.model?.dir).toBe(tiny);
    expect(stats.model?.name).toBe('tiny');
  });

  it('gives way to the command line, and the log says so', async () => {
    const tiny = ensureFixtureModel('tiny');
    const { stats, logs } = await session(['--model', tiny], ensureFixtureModel('tiny-llama'));
    expect(stats.model?.dir).toBe(tiny);
    expect(logs.some((l) => l.includes('takes effect when the server starts again'))).toBe(true);
  });
});
