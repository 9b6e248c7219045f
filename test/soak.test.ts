/**
 * A short soak (`mgd bench soak`): a few hundred completions over a few documents with edits, cancels, focus, close
 * and reopen, against `mgd serve --stdio` as a separate process. Asserts what must not grow with use: open
 * descriptors and child processes after warm-up, and no failed request. Never a time (the bench reports those).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ensureFixtureModel } from '../engine/model/fixtures.js';
import { benchSoak, descendants, openFds } from '../server/bench-soak.js';

const cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mgd-soak-'));
afterAll(() => fs.rmSync(cacheDir, { recursive: true, force: true }));

describe('mgd bench soak', () => {
  it('counts descriptors and descendants of a process', () => {
    if (openFds(process.pid) === null) return; // no /proc here
    expect(openFds(process.pid)).toBeGreaterThan(2); // stdin, stdout, stderr at least
    expect(descendants(process.pid)).toBeGreaterThanOrEqual(0);
    expect(openFds(2 ** 22 + 12345)).toBeNull(); // no such process
  });

  it('leaks no descriptor and no child process over 150 completions with cancels, closes and reopens', async () => {
    const r = await benchSoak({ model: ensureFixtureModel('tiny'), completions: 150, documents: 3, threads: 2, seed: 7, env: { ...process.env, MGD_CACHE_DIR: cacheDir } });
    expect(r.failed).toBe(0);
    expect(r.cancelled).toBeGreaterThan(0);
    expect(r.samples.map((s) => s.at)).toEqual([0, 15, 30, 45, 60, 75, 90, 105, 120, 135, 150]); // every tenth, and the end
    expect(r.latencyByDecileMs.reduce((n, d) => n + d.answered, 0) + r.cancelled).toBe(150);
    const warm = r.samples[1]; // the 10% mark
    const end = r.samples.at(-1);
    for (const s of r.samples) {
      expect(s.rssBytes).toBeGreaterThan(0);
      if (s.kvCacheBytes !== null) expect(s.kvCacheBytes).toBeLessThanOrEqual(s.kvCacheBudgetBytes!);
    }
    if (end!.openFds !== null) {
      // a descriptor per request (or per document) would show as dozens here; two allow a socket in mid-close
      expect(end!.openFds - warm!.openFds!).toBeLessThanOrEqual(2);
      expect(end!.children).toBe(warm!.children);
    }
  }, 240_000);
});
