/**
 * Robustness of the language server against a client's mistakes: >= 1,000 malformed or random messages (bad JSON,
 * non-JSON-RPC objects, unknown methods, wrong parameters, positions outside documents, huge and binary documents),
 * then a valid request must still be answered, the process must still run, and nothing unhandled may be reported.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ensureFixtureModel } from '../engine/model/fixtures.js';

const root = path.resolve(import.meta.dirname, '..');

function frame(body: string | Buffer): Buffer {
  const b = Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8');
  return Buffer.concat([Buffer.from(`Content-Length: ${b.length}\r\n\r\n`, 'ascii'), b]);
}

describe('mgd serve --stdio under fuzzing', () => {
  it('survives 1,200 malformed messages and still answers', async () => {
    const proc = spawn(process.execPath, [path.join(root, 'bin/mgd.js'), 'serve', '--stdio', '--model', ensureFixtureModel('tiny'), '--threads', '2'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = Buffer.alloc(0);
    let stderr = '';
    proc.stdout!.on('data', (d: Buffer) => (stdout = Buffer.concat([stdout, d])));
    proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const uri = pathToFileURL(path.join(root, 'fixtures/repos/monitor-cases/src/fuzz.ts')).href;
    const send = (msg: unknown) => proc.stdin!.write(frame(typeof msg === 'string' || Buffer.isBuffer(msg) ? (msg as string) : JSON.stringify(msg)));
    let seed = 99;
    const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
    const junk = (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(rand() * 256)));
    try {
      send({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { processId: null, rootUri: null, capabilities: {} } });
      send({ jsonrpc: '2.0', method: 'initialized', params: {} });
      send({ jsonrpc: '2.0', method: 'textDocument/didOpen', params: { textDocument: { uri, languageId: 'typescript', version: 1, text: 'const x = [1];\nx.' } } });
      const generators: Array<(i: number) => unknown> = [
        () => '{"jsonrpc": "2.0", "id": ',
        () => '[1, 2, 3]',
        () => '"just a string"',
        () => junk(1 + Math.floor(rand() * 64)).toString('latin1'),
        (i) => ({ jsonrpc: '2.0', id: 1000 + i, method: `mgd/unknown${i}`, params: {} }),
        (i) => ({ jsonrpc: '2.0', id: 1000 + i, method: 'textDocument/inlineCompletion', params: { textDocument: { uri }, position: { line: 'x', character: -1 } } }),
        (i) => ({ jsonrpc: '2.0', id: 1000 + i, method: 'textDocument/inlineCompletion', params: { textDocument: { uri }, position: { line: 99999, character: 99999 }, context: { triggerKind: 1 } } }),
        (i) => ({ jsonrpc: '2.0', id: 1000 + i, method: 'textDocument/completion', params: null }),
        (i) => ({ jsonrpc: '2.0', id: 1000 + i, method: 'textDocument/completion', params: { textDocument: { uri: 'file:///nope.ts' }, position: { line: 0, character: 0 } } }),
        () => ({ jsonrpc: '2.0', method: 'textDocument/didChange', params: { textDocument: { uri, version: 2 }, contentChanges: [{ range: { start: { line: -5, character: 0 }, end: { line: 1e9, character: 0 } }, text: 'y' }] } }),
        () => ({ jsonrpc: '2.0', method: 'textDocument/didChange', params: { textDocument: { uri: 'file:///unknown.ts', version: 2 }, contentChanges: 'not an array' } }),
        () => ({ jsonrpc: '2.0', method: 'textDocument/didOpen', params: { textDocument: { uri: `file:///bin${Math.floor(rand() * 5)}.ts`, languageId: 'x', version: 1, text: junk(2048).toString('latin1') } } }),
        () => ({ jsonrpc: '1.0', id: 'abc', method: 42 }),
        () => ({ jsonrpc: '2.0', method: '$/cancelRequest', params: { id: 'nonexistent' } }),
      ];
      for (let i = 0; i < 1200; i++) send(generators[i % generators.length]!(i));
      // a 10 MB document
      send({ jsonrpc: '2.0', method: 'textDocument/didOpen', params: { textDocument: { uri: 'file:///big.ts', languageId: 'typescript', version: 1, text: 'x'.repeat(10 * 1024 * 1024) } } });
      // then a valid request
      send({ jsonrpc: '2.0', method: 'textDocument/didOpen', params: { textDocument: { uri: uri + '2', languageId: 'typescript', version: 1, text: 'const x = [1];\nx.' } } });
      send({ jsonrpc: '2.0', id: 'final', method: 'textDocument/inlineCompletion', params: { textDocument: { uri: uri + '2' }, position: { line: 1, character: 2 }, context: { triggerKind: 1 } } });
      const deadline = Date.now() + 90_000;
      while (!stdout.includes('"id":"final"') && Date.now() < deadline && proc.exitCode === null) await new Promise((r) => setTimeout(r, 100));
      const text = stdout.toString('utf8');
      const final = /\{[^{}]*"id":"final"[^]*$/.exec(text);
      expect(final, `no answer to the final request; stderr: ${stderr.slice(-500)}`).not.toBeNull();
      expect(proc.exitCode).toBeNull();
      expect(text).toMatch(/"id":"final","result":\{"items":\[/);
      expect(stderr).not.toMatch(/Unhandled|unhandledRejection|TypeError|RangeError/);
    } finally {
      proc.kill();
    }
  });
});
