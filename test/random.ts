/**
 * Seeded random inputs for the kernel tests: a fresh seed per run (printed in failure messages, so a failing case can
 * be replayed by fixing it here), mulberry32 for the stream.
 */
export const seed = Number(process.env.MGD_TEST_SEED ?? Date.now() % 100000);
let state = seed;

/** Uniform in [0, 1). */
export function rand(): number {
  state = (state + 0x6d2b79f5) | 0;
  let t = state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

/** n values uniform in [-s, s). */
export const randn = (n: number, s = 1) => Float32Array.from({ length: n }, () => (rand() * 2 - 1) * s);
