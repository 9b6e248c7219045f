/**
 * The HTTP API on loopback: completions (JSON and SSE), health, concurrency, and its refusals.
 */
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHttpServer } from '../server/http/http-server.js';
import { ensureFixtureModel } from '../engine/model/fixtures.js';

const workspace = path.resolve(import.meta.dirname, '../fixtures/repos/monitor-cases');
let srv: Awaited<ReturnType<typeof startHttpServer>>;

beforeAll(async () => {
  srv = await startHttpServer({ host: '127.0.0.1', port: 0, workspace, engine: { model: ensureFixtureModel('tiny'), threads: 2 } });
});
afterAll(() => srv?.close());

const post = (body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${srv.url}/v1/completions`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });

const REQ = { prefix: "import { Account } from './model.js';\nexport function f(acc: Account) {\n  return acc.", suffix: '\n}\n', filepath: 'src/h.ts', max_tokens: 6 };

describe('mgd serve --http', () => {
  it('completes with the CLI JSON contract, monitors on', async () => {
    const r = await post(REQ);
    expect(r.status).toBe(200);
    const j = await r.json();
    expect(typeof j.text).toBe('string');
    expect(j.monitor.triggers).toBeGreaterThan(0);
    for (const k of ['loadMs', 'analysisMs', 'prefillMs', 'decodeMs', 'totalMs']) expect(typeof j.timings[k]).toBe('number');
    expect(j.cache.promptTokens).toBe(j.promptTokens);
    const health = await (await fetch(`${srv.url}/health`)).json();
    expect(health.status).toBe('ready');
    // the KV cache's counters: the prompt just completed is resident; this server does not persist it
    expect(health.kvCache.residentTokens).toBeGreaterThanOrEqual(j.promptTokens);
    expect(health.kvCache.budgetBytes).toBeGreaterThan(0);
    expect(health.kvCache.persisted).toBeNull();
  });

  it("streams Server-Sent Events that add up to the model's text; the done event carries the answer", async () => {
    const r = await post({ ...REQ, stream: true, max_tokens: 8 });
    expect(r.headers.get('content-type')).toContain('text/event-stream');
    const events = (await r.text())
      .split('\n\n')
      .filter(Boolean)
      .map((e) => ({ event: /^event: (.*)$/m.exec(e)?.[1] ?? 'message', data: JSON.parse(/^data: (.*)$/m.exec(e)![1]!) }));
    const deltas = events.filter((e) => e.event === 'message').map((e) => e.data.text as string);
    const done = events.find((e) => e.event === 'done');
    expect(done).toBeDefined();
    expect(deltas.length).toBeGreaterThan(0);
    // the deltas are the model's text as it is generated; the answer shown is it post-processed (and verified)
    expect(deltas.join('')).toBe(done!.data.raw);
    expect(typeof done!.data.text).toBe('string');
  });

  it('answers concurrent requests, one at a time inside', async () => {
    const results = await Promise.all(Array.from({ length: 6 }, (_, i) => post({ ...REQ, prefix: REQ.prefix + (i % 2 ? '' : ''), max_tokens: 3 })));
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 200]);
  });

  it.each([
    ['invalid JSON', '{"prefix": ', 400, /not valid JSON/],
    ['missing prefix', { suffix: 'x' }, 400, /"prefix" is required/],
    ['bad max_tokens', { prefix: 'x', max_tokens: 0 }, 400, /max_tokens/],
    ['a path outside the workspace', { prefix: 'x', filepath: '../../etc/passwd' }, 400, /outside the workspace/],
  ])('refuses %s', async (_name, body, status, message) => {
    const r = await post(body);
    expect(r.status).toBe(status);
    expect((await r.json()).error).toMatch(message);
  });

  it('refuses bodies over 2 MiB and unknown routes', async () => {
    const r = await post({ prefix: 'x'.repeat(3 * 1024 * 1024) });
    expect(r.status).toBe(413);
    expect((await fetch(`${srv.url}/v2/nothing`)).status).toBe(404);
    expect((await fetch(`${srv.url}/v1/completions`)).status).toBe(405);
  });
});

describe('tokens', () => {
  it('a non-loopback host needs a token; with a token, requests need it', async () => {
    await expect(startHttpServer({ host: '0.0.0.0', port: 0, workspace, engine: {} })).rejects.toThrow(/needs --token/);
    const guarded = await startHttpServer({ host: '127.0.0.1', port: 0, workspace, token: 's3cret', engine: { model: ensureFixtureModel('tiny'), threads: 2 } });
    try {
      expect((await fetch(`${guarded.url}/health`)).status).toBe(401);
      expect((await fetch(`${guarded.url}/health`, { headers: { authorization: 'Bearer s3cret' } })).status).toBe(200);
    } finally {
      await guarded.close();
    }
  });
});
