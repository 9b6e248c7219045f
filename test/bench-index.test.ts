/**
 * `mgd bench index` on a small hostile workspace: every source file is indexed once (the link that loops back to the
 * root and the one that leaves the workspace are not followed), the 200 MB file, the binary one and the links are
 * skipped and counted, the FIFO does not hang the walk, node_modules is not read. No timing is asserted.
 */
import { describe, expect, it } from 'vitest';
import { benchIndex } from '../engine/bench/index.js';

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

  it('stops at its file cap and says how many it left', async () => {
    const r = await benchIndex({ files: 120, maxFiles: 50 });
    expect(r.indexed).toBeLessThanOrEqual(50);
    expect(r.skipped['files over the limit of 50']).toBeGreaterThan(0);
  });
});
