/**
 * The engine API: requests reuse the resident KV cache (the next keystroke prefills only what changed), run one at a
 * time, and can be cancelled. Results are identical with and without reuse.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../engine/engine.js';
import { CancelledError, BadInputError } from '../engine/errors.js';
import { ensureFixtureModel } from '../engine/model/fixtures.js';
import { benchDecode } from '../engine/bench/decode.js';

const FILE = `export function area(r: number): number {\n  return Math.PI * r * r;\n}\n\nexport function total(xs: number[]): number {\n  let s = 0;\n  for (const x of xs) {\n    s += `;

describe('Engine', () => {
  let engine: Engine;
  beforeAll(async () => {
    engine = await Engine.load({ model: ensureFixtureModel('tiny'), threads: 2 });
  });
  afterAll(() => engine?.dispose());

  it('a request typed one character further reuses the cached prompt prefix', async () => {
    const first = await engine.complete({ prefix: FILE, suffix: '\n  }\n  return s;\n}\n', maxTokens: 4 });
    const second = await engine.complete({ prefix: FILE + 'x', suffix: '\n  }\n  return s;\n}\n', maxTokens: 4 });
    expect(first.cache.promptTokens).toBeGreaterThan(20);
    // FIM puts the suffix after the prefix, so reuse stops where the prefix changed: most of the prompt
    expect(second.cache.reusedTokens).toBeGreaterThan(second.cache.promptTokens / 2);
    expect(second.cache.reusedTokens).toBeLessThan(second.cache.promptTokens);
  });

  it('reuse does not change the result', async () => {
    const req = { prefix: FILE, suffix: '', maxTokens: 6, stop: 'none' as const };
    const a = await engine.complete(req);
    const b = await engine.complete(req); // fully cached prompt
    const fresh = await Engine.load({ model: ensureFixtureModel('tiny'), threads: 2 });
    const c = await fresh.complete(req);
    await fresh.dispose();
    expect(b.cache.reusedTokens).toBe(b.cache.promptTokens - 1);
    expect(b.text).toBe(a.text);
    expect(c.text).toBe(a.text);
  });

  it('runs requests one at a time, in order; a cancelled waiting request never starts', async () => {
    const ac = new AbortController();
    const p1 = engine.complete({ prefix: FILE, maxTokens: 3 });
    const p2 = engine.complete({ prefix: FILE + 'a', maxTokens: 3, signal: ac.signal });
    ac.abort();
    const p3 = engine.complete({ prefix: FILE + 'b', maxTokens: 3 });
    await expect(p1).resolves.toHaveProperty('tokens');
    await expect(p2).rejects.toBeInstanceOf(CancelledError);
    await expect(p3).resolves.toHaveProperty('tokens');
  });

  it('cancelling during decoding returns the partial completion', async () => {
    const ac = new AbortController();
    const r = await engine.complete({ prefix: FILE, maxTokens: 50, stop: 'none', signal: ac.signal, onText: () => ac.abort() });
    expect(r.stopReason).toBe('cancelled');
    expect(r.tokens).toBeLessThan(50);
  });

  it('rejects out-of-range max tokens as bad input', async () => {
    await expect(engine.complete({ prefix: 'x', maxTokens: 0 })).rejects.toBeInstanceOf(BadInputError);
  });
});

describe('Engine with the embedded model (512 positions)', () => {
  it('never decodes past the model: a long file and many max tokens still answer', async () => {
    const engine = await Engine.load({ threads: 2 });
    try {
      const prefix = Array.from({ length: 600 }, (_, i) => `export const value${i} = ${i} * 2;`).join('\n') + '\nexport const total = value1.';
      const r = await engine.complete({ prefix, suffix: '\n', filePath: 'a/very/long/path/'.repeat(8) + 'file.ts', monitors: false, maxTokens: 1000, stop: 'none' });
      expect(r.promptTokens + r.tokens).toBeLessThanOrEqual(engine.backend.config.maxPositionEmbeddings);
      expect(r.stopReason).not.toBe('cancelled');
    } finally {
      await engine.dispose();
    }
  });
});

describe('bench decode', () => {
  it('reports speeds with units in the keys (values are measurements, not checked)', async () => {
    const r = await benchDecode({ model: ensureFixtureModel('tiny'), promptTokens: 16, decodeTokens: 4, threads: 2 });
    for (const k of ['prefillTokPerS', 'decodeTokPerS', 'achievedGBps', 'copyGBps', 'fractionOfCopy', 'weightBytesPerToken'] as const)
      expect(typeof r[k]).toBe('number');
    expect(r.weightBytesPerToken).toBeGreaterThan(0);
    expect(r.weights).toBe('f32');
  });
});
