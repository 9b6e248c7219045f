/**
 * The machine's memory copy bandwidth, measured in the same run as a benchmark so decode speed can be read as a
 * fraction of what the memory system delivers. A large typed-array copy (well beyond the caches) counts bytes read
 * plus bytes written, as the STREAM "copy" kernel does.
 */
export function measureCopyGBps(bytes = 512 * 1024 * 1024, repeats = 5): number {
  const n = bytes / 4;
  const src = new Float32Array(n).fill(1);
  const dst = new Float32Array(n);
  dst.set(src); // first touch: page faults are not bandwidth
  let best = Infinity;
  for (let r = 0; r < repeats; r++) {
    const t0 = performance.now();
    dst.set(src);
    best = Math.min(best, performance.now() - t0);
  }
  return (2 * bytes) / (best / 1000) / 1e9;
}
