/**
 * The managed KV cache: the prefix tree of blocks (match, insert, pinning, LRU eviction), the backend's export and
 * import of KV ranges (a reused prefix gives the same logits as a recomputed one), persistence across a restart
 * (and its rejection for another model), and the engine moving between documents.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kvFloatsPerToken } from '../engine/backends/backend.js';
import { loadOnnxBackend, type OnnxBackend } from '../engine/backends/onnx/onnx-backend.js';
import { loadCache, saveCache, type PersistIdentity } from '../engine/cache/persist.js';
import { PrefixCache } from '../engine/cache/prefix-cache.js';
import { KvManager } from '../engine/cache/kv-manager.js';
import { Engine } from '../engine/engine.js';
import { openModelDir } from '../engine/model/directory.js';
import { ensureFixtureModel } from '../engine/model/fixtures.js';

const seq = (n: number, from = 0) => Array.from({ length: n }, (_, i) => from + i);
/** A fake KV reader: every float of position p is p (so gathered data can be checked). */
const fakeRead = (floats: number) => (start: number, end: number) => {
  const out = new Float32Array((end - start) * floats);
  for (let p = start; p < end; p++) out.fill(p, (p - start) * floats, (p - start + 1) * floats);
  return out;
};

describe('PrefixCache: a radix tree of KV blocks', () => {
  it('finds the longest cached prefix in whole blocks, across sequences that share a prefix', () => {
    const c = new PrefixCache({ floatsPerToken: 2, budgetBytes: 1 << 20, blockTokens: 4 });
    expect(c.insert(seq(10), 10, fakeRead(2))).toBe(2); // 8 positions in 2 blocks; the partial tail is not cached
    const shared = [...seq(8), 100, 101, 102, 103, 104];
    expect(c.insert(shared, shared.length, fakeRead(2))).toBe(1); // only the new third block
    const m = c.match([...seq(8), 100, 101, 102, 103, 999]);
    expect(m.length).toBe(12);
    expect(m.blocks.map((b) => b[0])).toEqual([0, 4, 8]);
    m.release();
    expect(c.match([1, 2, 3, 4]).length).toBe(0);
    expect(c.stats()).toMatchObject({ blocks: 3, hits: 1, misses: 1, insertedBlocks: 3 });
  });

  it('evicts least recently used leaves under a tiny budget, never a pinned block, parents after children', () => {
    const blockBytes = 4 * 2 * 4;
    const c = new PrefixCache({ floatsPerToken: 2, budgetBytes: 3 * blockBytes, blockTokens: 4 });
    c.insert(seq(8), 8, fakeRead(2)); // A: blocks a0 a1
    const pinned = c.match(seq(8)); // an in-flight decode uses A
    c.insert(seq(8, 50), 8, fakeRead(2)); // B needs 2 blocks, 1 fits: A's are pinned, so B stops at one block
    expect(c.stats().blocks).toBe(3);
    const check = c.match(seq(8));
    expect(check.length).toBe(8);
    check.release();
    pinned.release();
  });

  it('after release, eviction frees the oldest leaf first and a whole stale path before a fresh one', () => {
    const blockBytes = 4 * 2 * 4;
    const c = new PrefixCache({ floatsPerToken: 2, budgetBytes: 4 * blockBytes, blockTokens: 4 });
    c.insert(seq(8), 8, fakeRead(2)); // A: 2 blocks (older)
    c.insert(seq(8, 50), 8, fakeRead(2)); // B: 2 blocks (newer)
    c.insert(seq(8, 90), 8, fakeRead(2)); // C: evicts A's leaf, then A's root block
    expect(c.match(seq(8)).length).toBe(0);
    const b = c.match(seq(8, 50));
    const cc = c.match(seq(8, 90));
    expect([b.length, cc.length]).toEqual([8, 8]);
    b.release();
    cc.release();
    expect(c.stats().evictedBlocks).toBe(2);
    expect(c.stats().bytes).toBeLessThanOrEqual(c.stats().budgetBytes);
  });

  it('never frees a block in use, whatever the insert pressure', () => {
    const blockBytes = 2 * 1 * 4;
    const c = new PrefixCache({ floatsPerToken: 1, budgetBytes: 5 * blockBytes, blockTokens: 2 });
    c.insert(seq(6), 6, fakeRead(1));
    const inUse = c.match(seq(6));
    for (let i = 0; i < 50; i++) c.insert(seq(6, 1000 + i * 10), 6, fakeRead(1));
    expect(c.match(seq(6)).length).toBe(6);
    expect(inUse.blocks.map((b) => b[0])).toEqual([0, 2, 4]);
    expect(c.stats().bytes).toBeLessThanOrEqual(5 * blockBytes);
    inUse.release();
  });

  it('snapshots and restores its blocks, parents first', () => {
    const c = new PrefixCache({ floatsPerToken: 2, budgetBytes: 1 << 20, blockTokens: 4 });
    c.insert(seq(12), 12, fakeRead(2));
    c.insert([...seq(4), 7, 7, 7, 7], 8, fakeRead(2));
    const d = new PrefixCache({ floatsPerToken: 2, budgetBytes: 1 << 20, blockTokens: 4 });
    expect(d.restore(c.snapshot())).toBe(4);
    expect(d.match(seq(12)).length).toBe(12);
    expect(d.match([...seq(4), 7, 7, 7, 7]).blocks[1]![0]).toBe(4);
  });
});

describe('KV export/import through the ONNX backend (tiny random model)', () => {
  let backend: OnnxBackend;
  beforeAll(async () => {
    backend = await loadOnnxBackend(openModelDir(ensureFixtureModel('tiny')), { weights: 'f32', threads: 2 });
  });
  afterAll(() => backend?.dispose());

  it('a prefix gathered from exported blocks gives exactly the logits of the recomputed prefix', async () => {
    const prompt = seq(70).map((i) => (i * 7 + 3) % 200);
    const rest = [11, 12, 13];
    // the same steps as a cache hit takes (64 cached positions, then the prompt's tail), computed from scratch
    const a = backend.createCache();
    await backend.forward(a, prompt.slice(0, 64));
    await backend.forward(a, prompt.slice(64));
    const recomputed = Array.from(await backend.forward(a, rest));
    // blocks of 32 positions, as the prefix cache would hold them, then one gather
    const blocks = [backend.exportKv(a, 0, 32), backend.exportKv(a, 32, 64)];
    expect(blocks[0]!.length).toBe(32 * kvFloatsPerToken(backend.config));
    const b = backend.importKv(prompt.slice(0, 64), blocks);
    expect(b.tokens).toEqual(prompt.slice(0, 64));
    await backend.forward(b, prompt.slice(64));
    const reused = Array.from(await backend.forward(b, rest));
    expect(reused).toEqual(recomputed);
    // one-shot prefill sums the attention in another order: equal to rounding, not to the bit
    const c = backend.createCache();
    await backend.forward(c, prompt);
    const oneShot = await backend.forward(c, rest);
    const worst = reused.reduce((m, x, i) => Math.max(m, Math.abs(x - oneShot[i]!)), 0);
    expect(worst).toBeLessThan(1e-4);
    expect(() => backend.importKv(prompt.slice(0, 63), blocks)).toThrow(/positions/);
  });

  it('a cache directory that cannot be written costs the warm start, never the process', async () => {
    const logs: string[] = [];
    // a directory that cannot be made: its parent is a regular file
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'mgd-kv-')), 'not-a-dir');
    fs.writeFileSync(file, '');
    const kv = new KvManager(backend, { modelKey: 'x', persistFile: path.join(file, 'kv', 'cache.mgdkv'), blockTokens: 4, log: (m) => logs.push(m) });
    const { cache } = kv.acquire(seq(20), 'a.ts');
    await backend.forward(cache, seq(20));
    kv.dispose();
    expect(logs.some((l) => /could not persist/.test(l))).toBe(true);
  });
});

describe('persistence', () => {
  const identity: PersistIdentity = { model: 'm1:f32', floatsPerToken: 8, blockTokens: 4, groups: 4 };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mgd-kv-'));
  const file = path.join(dir, 'cache.mgdkv');
  const read = (start: number, end: number) => Float32Array.from({ length: (end - start) * 8 }, (_, i) => Math.sin(start * 8 + i) * 3);

  it('survives a restart (int8, within 1% of each group\'s largest value) and a changed file misses from the change on', () => {
    const c = new PrefixCache({ floatsPerToken: 8, budgetBytes: 1 << 20, blockTokens: 4 });
    c.insert(seq(16), 16, read);
    expect(saveCache(c, identity, file, 1 << 20)).toBe(4);
    const d = new PrefixCache({ floatsPerToken: 8, budgetBytes: 1 << 20, blockTokens: 4 });
    expect(loadCache(d, identity, file)).toEqual({ blocks: 4 });
    const m = d.match(seq(16));
    expect(m.length).toBe(16);
    const want = read(4, 8);
    m.blocks[1]!.forEach((v, i) => expect(Math.abs(v - want[i]!)).toBeLessThan(0.01 * 3));
    // the file changed at position 9: its tokens differ there, so only the blocks before it are served
    expect(d.match([...seq(9), 500, ...seq(6, 10)]).length).toBe(8);
  });

  it('is rejected for another model, another geometry, or a damaged file; nothing is loaded', () => {
    const d = () => new PrefixCache({ floatsPerToken: 8, budgetBytes: 1 << 20, blockTokens: 4 });
    expect(loadCache(d(), { ...identity, model: 'm2:f32' }, file)).toMatchObject({ rejected: expect.stringMatching(/different model/) });
    expect(loadCache(d(), { ...identity, blockTokens: 8 }, file)).toMatchObject({ rejected: expect.stringMatching(/blockTokens/) });
    const damaged = path.join(dir, 'damaged.mgdkv');
    fs.writeFileSync(damaged, fs.readFileSync(file).subarray(0, 200));
    expect(loadCache(d(), identity, damaged)).toMatchObject({ rejected: expect.any(String) });
    fs.writeFileSync(damaged, 'hello');
    expect(loadCache(d(), identity, damaged)).toMatchObject({ rejected: /not an mgd KV cache/ });
    expect(loadCache(d(), identity, path.join(dir, 'absent.mgdkv'))).toEqual({ blocks: 0 });
  });

});

describe('the engine across documents and restarts (tiny random model)', () => {
  const text = (name: string) => Array.from({ length: 30 }, (_, i) => `const ${name}${i} = ${i} * 2;`).join('\n') + '\n';
  const model = () => ensureFixtureModel('tiny');
  let saved: string | undefined;
  beforeAll(() => {
    saved = process.env.MGD_CACHE_DIR;
    process.env.MGD_CACHE_DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'mgd-kv-engine-'));
  });
  afterAll(() => {
    if (saved === undefined) delete process.env.MGD_CACHE_DIR;
    else process.env.MGD_CACHE_DIR = saved;
  });

  it('back to an earlier document, its prefix comes from the prefix cache, and the completion is unchanged', async () => {
    const engine = await Engine.load({ model: model(), threads: 2 });
    try {
      const req = (file: string) => ({ prefix: text(file), suffix: '', filePath: `/ws/${file}.ts`, monitors: false, maxTokens: 6, stop: 'none' as const });
      const first = await engine.complete(req('alpha'));
      expect(first.cache.source).toBe('cold');
      const again = await engine.complete(req('alpha'));
      expect(again.cache.source).toBe('resident');
      await engine.complete(req('beta'));
      const back = await engine.complete(req('alpha'));
      expect(back.cache.source).toBe('prefix-cache');
      expect(back.cache.reusedTokens).toBeGreaterThan(back.cache.promptTokens * 0.8);
      expect(back.text).toBe(first.text);
      expect(engine.kvStats().spliceCount).toBe(1);
    } finally {
      await engine.dispose();
    }
  });

  it('a persisted cache serves the next process; another model does not see it', async () => {
    const req = { prefix: text('gamma'), suffix: '', filePath: '/ws/gamma.ts', monitors: false, maxTokens: 6, stop: 'none' as const };
    const first = await Engine.load({ model: model(), threads: 2, kvCache: { persist: true } });
    const cold = await first.complete(req);
    await first.dispose();
    const second = await Engine.load({ model: model(), threads: 2, kvCache: { persist: true } });
    try {
      expect(second.kvStats().loadedBlocks).toBeGreaterThan(0);
      const warm = await second.complete(req);
      expect(warm.cache.source).toBe('prefix-cache');
      expect(warm.cache.reusedTokens).toBeGreaterThan(0);
      expect(warm.tokens).toBe(cold.tokens);
    } finally {
      await second.dispose();
    }
    const other = await Engine.load({ model: ensureFixtureModel('tiny-llama'), threads: 2, kvCache: { persist: true } });
    try {
      expect(other.kvStats().loadedBlocks).toBe(0);
    } finally {
      await other.dispose();
    }
  });
});

describe('mgd bench cache (a typing session with 2k tokens of repository context)', () => {
  it('serves almost every prompt token from the cache, and the prefix cache serves the return to a file', async () => {
    const { benchCache } = await import('../engine/bench/cache.js');
    const r = await benchCache({ keystrokes: 60, threads: 2 });
    expect(r.contextTokensP50).toBeGreaterThanOrEqual(2000);
    expect(r.reusedFraction).toBeGreaterThan(0.95);
    expect(r.hitNewTokensP50).toBeLessThan(20);
    expect(r.prefixCacheServed).toBeGreaterThan(0);
    expect(r.bytesHeld).toBeLessThanOrEqual(r.budgetBytes + 64 * 2 ** 20);
  });
});

describe('background prefill (prefetch)', () => {
  const text = Array.from({ length: 60 }, (_, i) => `const item${i} = compute(${i});`).join('\n') + '\n';
  it('prefills a file opened in the background, so the first completion there computes only the rest', async () => {
    const engine = await Engine.load({ model: ensureFixtureModel('tiny'), threads: 2 });
    try {
      await engine.complete({ prefix: 'let a = 1;\n', filePath: '/ws/other.ts', monitors: false, maxTokens: 1 });
      const req = { prefix: text, suffix: '\n', filePath: '/ws/opened.ts', monitors: false, maxTokens: 2, stop: 'none' as const };
      const prefilled = await engine.prefetch(req);
      expect(prefilled).toBeGreaterThan(100);
      const r = await engine.complete(req);
      expect(r.cache.reusedTokens).toBeGreaterThanOrEqual(prefilled);
    } finally {
      await engine.dispose();
    }
  });

  it('in the joined suffix-first order, the prefetch at the cursor serves the request, and typing reuses all but the end', async () => {
    const engine = await Engine.load({ model: ensureFixtureModel('tiny'), threads: 2 });
    try {
      const suffix = Array.from({ length: 20 }, (_, i) => `use(item${i});`).join('\n') + '\n';
      const req = { prefix: text, suffix, filePath: '/ws/joined.ts', monitors: false, maxTokens: 2, stop: 'none' as const, fimOrder: 'spm-joined' as const };
      // at the file's start only the header is shared with other positions: a few tokens
      const header = await engine.prefetch({ ...req, prefix: '', suffix: text + suffix });
      expect(header).toBeGreaterThan(0);
      expect(header).toBeLessThan(20);
      const prefilled = await engine.prefetch(req);
      expect(prefilled).toBeGreaterThan(100);
      const r = await engine.complete(req);
      expect(r.cache.reusedTokens).toBeGreaterThanOrEqual(header + prefilled);
      // the prefetch covered the whole prompt (suffix included, since it comes first) but the prefix's last token
      expect(r.cache.reusedTokens).toBeGreaterThanOrEqual(r.cache.promptTokens - 2);
      // a keystroke at the cursor: the suffix stays where it is, so only the prompt's last tokens are new
      const typed = await engine.complete({ ...req, prefix: text + 'co' });
      expect(typed.cache.reusedTokens).toBeGreaterThanOrEqual(typed.cache.promptTokens - 3);
    } finally {
      await engine.dispose();
    }
  });

  it('a real request cancels a queued or running prefetch and is answered first', async () => {
    const engine = await Engine.load({ model: ensureFixtureModel('tiny'), threads: 2 });
    try {
      const pending = engine.prefetch({ prefix: text.repeat(3), filePath: '/ws/big.ts', monitors: false });
      const answer = await engine.complete({ prefix: 'let b = ', filePath: '/ws/now.ts', monitors: false, maxTokens: 1 });
      expect(answer.tokens).toBe(1);
      expect(await pending).toBe(0);
    } finally {
      await engine.dispose();
    }
  });
});
