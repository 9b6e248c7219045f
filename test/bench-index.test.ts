/**
 * `mgd bench index` on a small hostile workspace: every source file is indexed once (the link that loops back to the
 * root and the one that leaves the workspace are not followed), the 200 MB file, the binary one and the links are
 * skipped and counted, the FIFO does not hang the walk, node_modules is not read. No timing is asserted.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { benchIndex, type IndexBenchResult } from '../engine/bench/index.js';

const isRoot = process.getuid?.() === 0;

describe('the repository index on a hostile workspace', () => {
  it('indexes each source file once and skips what it must', async () => {
    const r = await benchIndex({ files: 250 });
    expect(r.hostile).toContain('a directory link back to the root (src/loop -> ..)');
    // the generated files, plus the unreadable directory's one where it could be read after all (as root)
    expect(r.indexed).toBe(250 + (r.unreadableEffective ? 0 : 1));
    expect(r.skipped['symbolic links']).toBe(3);
    expect(r.skipped['files over 1000000 bytes']).toBe(1);
    expect(r.skipped['binary files']).toBe(1);
    if (r.unreadableEffective) expect(r.skipped['unreadable or vanished directories']).toBe(1);
  });

  // Root reads a directory whatever its mode, so as root the bench is run again as an unprivileged user (nobody),
  // for whom the locked directory really is unreadable: it must be skipped and counted, not end the walk.
  it.runIf(isRoot)('as an unprivileged user, the unreadable directory is skipped and counted', async () => {
    const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'mgd-index-nobody-'));
    fs.chmodSync(cache, 0o777);
    try {
      const stdout = await new Promise<string>((resolve, reject) =>
        execFile(process.execPath, [path.join(import.meta.dirname, '..', 'bin', 'mgd.js'), 'bench', 'index', '--files', '60', '--json'], { uid: 65534, gid: 65534, env: { ...process.env, HOME: cache, MGD_CACHE_DIR: cache, TMPDIR: cache } }, (e, out, err) => (e ? reject(new Error(`${e.message}: ${err}`)) : resolve(out))),
      );
      const r = JSON.parse(stdout) as IndexBenchResult;
      expect(r.unreadableEffective).toBe(true);
      expect(r.indexed).toBe(60);
      expect(r.skipped['unreadable or vanished directories']).toBe(1);
    } finally {
      fs.rmSync(cache, { recursive: true, force: true });
    }
  });

  it('stops at its file cap and says how many it left', async () => {
    const r = await benchIndex({ files: 120, maxFiles: 50 });
    expect(r.indexed).toBeLessThanOrEqual(50);
    expect(r.skipped['files over the limit of 50']).toBeGreaterThan(0);
  });
});
