import { expect } from 'vitest';

/**
 * Numeric checks for the kernel tests. Seeded random inputs: a fresh seed per run (printed in failure messages, so a failing case can
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

/**
 * actual within rel·(1 + max |expected|) of expected everywhere (NaN fails); the seed and `label` in the message. The
 * scale is the reference's largest magnitude, so near-zero entries are not held to a relative bound they cannot meet.
 */
export function expectClose(actual: Float32Array, expected: ArrayLike<number>, rel = 1e-5, label = ''): void {
  expect(actual.length, `seed ${seed} ${label}`).toBe(expected.length);
  let worst = 0;
  let scale = 0;
  for (let i = 0; i < actual.length; i++) {
    worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!) || (Number.isNaN(actual[i]) ? Infinity : 0));
    scale = Math.max(scale, Math.abs(expected[i]!));
  }
  expect(worst, `seed ${seed} ${label}`).toBeLessThanOrEqual(rel * (1 + scale));
}
