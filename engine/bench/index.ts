/**
 * The repository index (engine/context/repo-index.ts) on a large, hostile workspace: many small source files in
 * nested directories, a directory symbolic link that loops back to the root, a link that leaves the workspace, a
 * 200 MB source file (sparse), a FIFO named like a source file (reading it would block forever), an unreadable
 * directory, a dependency directory and binary files. The workspace is generated (no real project that size can be
 * fetched here). Reported: the walk's wall time, files indexed and skipped by reason, the longest the event loop
 * was held (indexing runs in slices on the server's thread, so this is what a keystroke may wait behind), and memory.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { RepoIndex } from '../context/repo-index.js';

export interface IndexBenchOptions {
  files: number;
  /** The index's cap on files (RepoIndexOptions.maxFiles); the default is the server's. */
  maxFiles?: number;
  /** Where to build the workspace (a fresh temporary directory by default; removed afterwards). */
  dir?: string;
}

export interface IndexBenchResult {
  bench: 'index';
  files: number;
  hostile: string[];
  /** Whether the unreadable directory really was unreadable (root reads it anyway). */
  unreadableEffective: boolean;
  generateMs: number;
  indexMs: number;
  indexed: number;
  skipped: Record<string, number>;
  eventLoopMaxMs: number;
  eventLoopP99Ms: number;
  rssBeforeMb: number;
  rssAfterMb: number;
  heapAfterMb: number;
}

export async function benchIndex(o: IndexBenchOptions): Promise<IndexBenchResult> {
  const root = o.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'mgd-bench-index-'));
  const ws = path.join(root, 'ws');
  const t0 = performance.now();
  const hostile = makeWorkspace(ws, o.files);
  const generateMs = performance.now() - t0;
  let unreadableEffective = false;
  try {
    fs.readdirSync(path.join(ws, 'locked'));
  } catch {
    unreadableEffective = true;
  }
  const rssBefore = process.memoryUsage().rss;
  const delay = monitorEventLoopDelay({ resolution: 5 });
  delay.enable();
  const index = new RepoIndex(ws, { maxFiles: o.maxFiles, persistFile: null });
  const t1 = performance.now();
  await index.whenIndexed();
  const indexMs = performance.now() - t1;
  delay.disable();
  const mem = process.memoryUsage();
  const result: IndexBenchResult = {
    bench: 'index',
    files: o.files,
    hostile,
    unreadableEffective,
    generateMs: Math.round(generateMs),
    indexMs: Math.round(indexMs),
    indexed: index.files.size,
    skipped: { ...index.skipped },
    eventLoopMaxMs: round(delay.max / 1e6),
    eventLoopP99Ms: round(delay.percentile(99) / 1e6),
    rssBeforeMb: Math.round(rssBefore / 2 ** 20),
    rssAfterMb: Math.round(mem.rss / 2 ** 20),
    heapAfterMb: Math.round(mem.heapUsed / 2 ** 20),
  };
  fs.chmodSync(path.join(ws, 'locked'), 0o755);
  if (!o.dir) fs.rmSync(root, { recursive: true, force: true });
  return result;
}

const round = (x: number) => Math.round(x * 10) / 10;

/** Writes the workspace; returns what is hostile in it. */
function makeWorkspace(ws: string, files: number): string[] {
  const perDir = 100;
  for (let f = 0; f < files; f++) {
    const d = Math.floor(f / perDir);
    const dir = path.join(ws, 'src', `group${Math.floor(d / 100)}`, `dir${d}`);
    if (f % perDir === 0) fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, `mod${f}.ts`), `export interface Item${f} {\n  id: number;\n  name: string;\n}\n\nexport function make${f}(id: number): Item${f} {\n  return { id, name: 'item ${f}' };\n}\n`);
  }
  fs.mkdirSync(path.join(ws, 'src'), { recursive: true });
  const hostile: string[] = [];
  fs.symlinkSync('..', path.join(ws, 'src', 'loop'));
  hostile.push('a directory link back to the root (src/loop -> ..)');
  fs.symlinkSync(os.tmpdir(), path.join(ws, 'src', 'outside'));
  hostile.push('a directory link out of the workspace');
  fs.symlinkSync('no-such-file.ts', path.join(ws, 'src', 'dangling.ts'));
  hostile.push('a dangling link');
  const big = path.join(ws, 'src', 'huge.ts');
  fs.writeFileSync(big, '');
  fs.truncateSync(big, 200 * 2 ** 20);
  hostile.push('a 200 MB source file');
  try {
    execFileSync('mkfifo', [path.join(ws, 'src', 'pipe.ts')]);
    hostile.push('a FIFO named pipe.ts');
  } catch {
    // no mkfifo here: that case is left out (the result says which were made)
  }
  fs.mkdirSync(path.join(ws, 'locked'));
  fs.writeFileSync(path.join(ws, 'locked', 'secret.ts'), 'export const s = 1;\n');
  fs.chmodSync(path.join(ws, 'locked'), 0);
  hostile.push('an unreadable directory');
  fs.mkdirSync(path.join(ws, 'node_modules', 'dep'), { recursive: true });
  for (let i = 0; i < 100; i++) fs.writeFileSync(path.join(ws, 'node_modules', 'dep', `f${i}.js`), 'module.exports = 1;\n');
  hostile.push('a dependency directory (node_modules)');
  fs.writeFileSync(path.join(ws, 'src', 'blob.ts'), Buffer.from([0, 1, 2, 3, 0, 255]));
  hostile.push('a binary file named .ts');
  return hostile;
}
