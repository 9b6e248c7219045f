/**
 * Both doors against 10,000 generated hostile inputs each (server/bench-fuzz.ts, seeded): after every batch a valid
 * request is answered as the first one was, the process lives, nothing unhandled is reported, and memory stays
 * bounded. Inputs that once broke a door are kept as their own cases below.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { benchFuzz, frame, type DoorReport } from '../server/bench-fuzz.js';
import { ensureFixtureModel } from '../engine/model/fixtures.js';

const root = path.resolve(import.meta.dirname, '..');

function expectSurvived(r: DoorReport | undefined, inputs: number): void {
  expect(r).toBeDefined();
  expect(r!.failures).toEqual([]);
  expect(r!.unhandled).toEqual([]);
  expect(r!.crashed).toBe(false);
  expect(r!.inputs).toBe(inputs);
  expect(r!.passed).toBe(r!.batches);
  // bounded: no batch may leave the process much larger than after the first (a leak per input would show)
  if (r!.rssMB.first !== null) expect(r!.rssMB.last!).toBeLessThan(r!.rssMB.first + 400);
}

describe('mgd bench fuzz (tiny model)', () => {
  it('the LSP door survives 10,000 inputs: framing, bodies, wrong types in every field, requests after shutdown', async () => {
    const r = await benchFuzz({ door: 'lsp', inputs: 10_000, seed: 7, batch: 1000, model: ensureFixtureModel('tiny'), threads: 1 });
    expectSurvived(r.lsp, 10_000);
    for (const kind of ['bad-length', 'garbage', 'split', 'merged', 'wrong-type', 'deep-json', 'invalid-utf8', 'after-shutdown']) expect(r.lsp!.byKind[kind], kind).toBeGreaterThan(0);
  });

  it('the HTTP door survives 10,000 inputs from 100 clients at a time', async () => {
    const r = await benchFuzz({ door: 'http', inputs: 10_000, seed: 7, batch: 1000, model: ensureFixtureModel('tiny'), threads: 1 });
    expectSurvived(r.http, 10_000);
    for (const kind of ['wrong-type', 'huge-header', 'huge-body', 'slow-body', 'aborted', 'bad-host', 'escape-path']) expect(r.http!.byKind[kind], kind).toBeGreaterThan(0);
  });
});

/** `mgd serve --stdio`, raw: writes `inputs` after initialize, then asks mgd/stats; what came back, by the deadline. */
async function afterInputs(inputs: Array<string | Buffer>, final: unknown = { jsonrpc: '2.0', id: 'after', method: 'mgd/stats', params: {} }): Promise<string> {
  const proc = spawn(process.execPath, [path.join(root, 'bin/mgd.js'), 'serve', '--stdio', '--model', ensureFixtureModel('tiny'), '--threads', '1'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stdin!.write(msg({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { processId: null, rootUri: null, capabilities: {} } }));
  for (const i of inputs) proc.stdin!.write(i);
  proc.stdin!.write(msg(final));
  const deadline = Date.now() + 30_000;
  while (!out.includes('"id":"after"') && Date.now() < deadline && proc.exitCode === null) await new Promise((r) => setTimeout(r, 50));
  proc.kill();
  return out;
}

/** A JSON-RPC message, framed. */
const msg = (m: unknown) => frame(JSON.stringify(m));

describe('LSP framing that used to stall the server', () => {
  // before the frame guard, vscode-jsonrpc waited for the body of a bad header forever: nothing after it was answered;
  // a block without a length at the end of what was read made the guard's resync loop (and eat memory) for ever
  it.each(['Content-Length: 99999999999\r\n\r\n{}', 'Content-Length: abc\r\n\r\n{}', 'Content-Length: -5\r\n\r\n{}', 'Content-Type: application/json\r\n\r\n{}'])('answers after %j', async (bad) => {
    expect(await afterInputs([bad])).toContain('"id":"after"');
  });
});

describe('inputs the fuzzer found', () => {
  it('a didOpen whose uri is null no longer kills the server (its prefetch rejected unhandled)', async () => {
    const open = msg({ jsonrpc: '2.0', method: 'textDocument/didOpen', params: { textDocument: { uri: null, languageId: 'typescript', version: 1, text: 'x.' } } });
    const out = await afterInputs([msg({ jsonrpc: '2.0', method: 'initialized', params: {} }), open]);
    expect(out).toContain('"id":"after"');
  });

  it('a request after shutdown is an error, not an answer', async () => {
    const out = await afterInputs([msg({ jsonrpc: '2.0', id: 2, method: 'shutdown', params: null })], { jsonrpc: '2.0', id: 'after', method: 'mgd/stats', params: {} });
    expect(out).toMatch(/"id":"after","error":\{"code":-32600/);
  });
});
