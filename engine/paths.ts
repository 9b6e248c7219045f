/**
 * Locations inside the installed package. The code runs from source (vitest) and compiled (dist/), so the package
 * root is found by walking up from this module to the directory holding package.json, not by a fixed relative path.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

let root: string | null = null;

export function packageRoot(): string {
  if (root) return root;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return (root = dir);
    const up = path.dirname(dir);
    if (up === dir) throw new Error('mgd: cannot find the package root (no package.json above the engine)');
    dir = up;
  }
}

/** The model used when none is given: trained by fixtures/models/train and shipped in the repository. */
export function embeddedModelDir(): string {
  return path.join(packageRoot(), 'fixtures', 'models', 'mgd-coder-30m');
}

/** Where mgd keeps what it builds or learns between runs (ONNX graphs, persisted KV, eval workspaces). */
export function cacheRoot(): string {
  return process.env.MGD_CACHE_DIR ?? path.join(os.homedir(), '.cache', 'mgd');
}
