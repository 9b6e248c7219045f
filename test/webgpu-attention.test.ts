/**
 * prefill-attention.wgsl (Q-tiled causal attention) against a float64 reference, on fresh random inputs (seed printed
 * on failure): row counts that are not multiples of the query tile, a cache already holding keys (pos0 > 0) and
 * positions past pos0 + M filled with NaN (never read), GQA groups of 2 and 7, sliding windows, head widths 64, 128,
 * 256 and 40, the tiles of a 16 KiB workgroup-storage device beside the adapter's own, and one recorded dispatch
 * replayed at two positions through the step uniform. Tolerance: 1e-5 relative to the result's scale.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attention, partialFloats, PREFILL_MIN_ROWS, prefillAttention, prefillStorageBytes, prefillTiles, type PrefillTiles } from '../kernels/attention.js';
import { openGpu, readBack, stepValues, storage, submit, UNIFORM, UniformPool, upload, type GpuContext } from '../kernels/gpu.js';
import { expectClose, rand, randn } from './numeric.js';

let ctx: GpuContext | null = null;

beforeAll(async () => {
  ctx = await openGpu();
});
afterAll(() => ctx?.device.destroy());

interface Shape {
  M: number;
  nH: number;
  kvH: number;
  hd: number;
  pos0: number;
  window: number;
  /** Floats between query rows (the fused qkv row is wider than nH·hd). */
  qStride: number;
  cap: number;
}

/** Random queries and a cache whose positions pos0 + M .. cap hold NaN: a kernel that reads past its keys fails. */
function inputs(s: Shape): { q: Float32Array; kv: Float32Array } {
  const q = randn(s.M * s.qStride, 2);
  const kv = randn(2 * s.kvH * s.cap * s.hd, 1.5);
  for (let half = 0; half < 2 * s.kvH; half++) kv.fill(NaN, (half * s.cap + s.pos0 + s.M) * s.hd, (half + 1) * s.cap * s.hd);
  return { q, kv };
}

/** out[m][h·hd + d]: softmax over the keys row m sees (0 .. pos0 + m, the last `window` when window > 0). */
function reference(s: Shape, q: Float32Array, kv: Float32Array, pos0 = s.pos0): Float64Array {
  const out = new Float64Array(s.M * s.nH * s.hd);
  for (let m = 0; m < s.M; m++)
    for (let h = 0; h < s.nH; h++) {
      const g = Math.floor(h / (s.nH / s.kvH));
      const T = pos0 + m + 1;
      const first = s.window ? Math.max(0, T - s.window) : 0;
      const sc: number[] = [];
      for (let t = first; t < T; t++) {
        let dot = 0;
        for (let d = 0; d < s.hd; d++) dot += q[m * s.qStride + h * s.hd + d]! * kv[(g * s.cap + t) * s.hd + d]!;
        sc.push(dot / Math.sqrt(s.hd));
      }
      const mx = Math.max(...sc);
      const e = sc.map((x) => Math.exp(x - mx));
      const sum = e.reduce((a, b) => a + b, 0);
      for (let t = first; t < T; t++)
        for (let d = 0; d < s.hd; d++) out[(m * s.nH + h) * s.hd + d]! += (e[t - first]! / sum) * kv[((s.kvH + g) * s.cap + t) * s.hd + d]!;
    }
  return out;
}

const shape = (o: Partial<Shape> & Pick<Shape, 'M' | 'nH' | 'kvH' | 'hd'>): Shape => {
  const pos0 = o.pos0 ?? 0;
  return { pos0, window: 0, qStride: o.nH * o.hd, cap: pos0 + o.M + 11, ...o };
};

async function runPrefill(s: Shape, tiles?: PrefillTiles): Promise<void> {
  const d = ctx!.device;
  const { q, kv } = inputs(s);
  const out = storage(d, s.M * s.nH * s.hd * 4);
  const part = storage(d, 16); // flash-decoding scratch: not bound by the prefill kernel
  const args = { ...s, q: upload(d, q), kv: upload(d, kv), part, out };
  submit(d, [prefillAttention(ctx!, args, tiles)]);
  const got = new Float32Array(await readBack(d, out, 0, s.M * s.nH * s.hd * 4));
  const t = tiles ?? prefillTiles(s.hd, d.limits.maxComputeWorkgroupStorageSize);
  expectClose(got, reference(s, q, kv), 1e-5, `${JSON.stringify(s)} tiles ${t.TQ}x${t.TK}`);
}

describe('prefill attention (Q-tiled)', () => {
  it('has an adapter (llvmpipe at least)', () => {
    expect(ctx, 'no WebGPU adapter: Dawn needs libEGL/libGLESv2 from Mesa (apt: libegl1 libgles2 libegl-mesa0 libgl1-mesa-dri)').not.toBeNull();
  });

  it('tiles fit the workgroup storage: WebGPU minimum and this adapter', () => {
    for (const limit of [16384, ctx!.device.limits.maxComputeWorkgroupStorageSize])
      for (const hd of [32, 40, 64, 128, 256]) {
        const t = prefillTiles(hd, limit);
        expect(prefillStorageBytes(hd, t)).toBeLessThanOrEqual(limit);
        expect(64 % t.TK).toBe(0);
      }
    expect(prefillTiles(128, 16384)).toEqual({ TQ: 16, TK: 8 });
    expect(prefillTiles(256, 16384)).toEqual({ TQ: 8, TK: 4 });
  });

  it('hd 64: GQA 2 and 7, rows not multiples of the tile, pos0 0 and > 0', async () => {
    for (const s of [
      shape({ M: 1, nH: 4, kvH: 2, hd: 64 }),
      shape({ M: 5, nH: 4, kvH: 2, hd: 64, pos0: 37 }),
      shape({ M: 17, nH: 14, kvH: 2, hd: 64 }),
      shape({ M: 40, nH: 4, kvH: 2, hd: 64, pos0: 70 }),
      shape({ M: 17, nH: 14, kvH: 2, hd: 64, pos0: 45, qStride: 18 * 64 }), // rows of the fused qkv projection
    ])
      await runPrefill(s);
  });

  it('sliding window (key t seen by row pos while t + window > pos)', async () => {
    for (const s of [
      shape({ M: 40, nH: 4, kvH: 2, hd: 64, pos0: 30, window: 17 }),
      shape({ M: 17, nH: 14, kvH: 2, hd: 64, pos0: 3, window: 9 }),
      shape({ M: 5, nH: 4, kvH: 2, hd: 64, pos0: 80, window: 64 }),
    ])
      await runPrefill(s);
  });

  it('hd 128 and 256, also with the tiles of a 16 KiB device; hd 40', async () => {
    await runPrefill(shape({ M: 17, nH: 4, kvH: 2, hd: 128, pos0: 21 }));
    await runPrefill(shape({ M: 40, nH: 4, kvH: 2, hd: 128, pos0: 9, window: 30 }), prefillTiles(128, 16384));
    await runPrefill(shape({ M: 5, nH: 14, kvH: 2, hd: 128, pos0: 12 }), prefillTiles(128, 16384));
    await runPrefill(shape({ M: 9, nH: 4, kvH: 2, hd: 256, pos0: 13 }));
    await runPrefill(shape({ M: 9, nH: 4, kvH: 2, hd: 256, pos0: 6, window: 8 }), prefillTiles(256, 16384));
    await runPrefill(shape({ M: 17, nH: 4, kvH: 4, hd: 40, pos0: 19 }));
    await runPrefill(shape({ M: 5, nH: 6, kvH: 2, hd: 40, window: 3 }), { TQ: 4, TK: 2 });
  });

  it(`attention() takes the prefill kernel from ${PREFILL_MIN_ROWS} rows on, recorded once and replayed at two positions`, async () => {
    const d = ctx!.device;
    const s = shape({ M: 17, nH: 14, kvH: 2, hd: 64, window: 0, cap: 300 });
    const step = d.createBuffer({ size: 16, usage: UNIFORM });
    const uniforms = new UniformPool(d);
    const out = storage(d, s.M * s.nH * s.hd * 4);
    const part = storage(d, partialFloats(s.M, s.nH, s.hd, s.cap) * 4); // enough for the flash-decoding rows only
    const { q } = inputs(s);
    const kv = randn(2 * s.kvH * s.cap * s.hd, 1.5);
    const args = { ...s, pos0: 0, q: upload(d, q), kv: upload(d, kv), part, out, step, maxKeys: s.cap, uniforms };
    const ds = attention(ctx!, args);
    expect(ds.length).toBe(1);
    expect(attention(ctx!, { ...args, M: PREFILL_MIN_ROWS - 1 }).length).toBe(2);
    expect(() => attention(ctx!, { ...args, part: storage(d, 16), M: PREFILL_MIN_ROWS - 1 })).toThrow(RangeError);
    expect(attention(ctx!, { ...args, hd: 6, qStride: s.nH * 6 }).length).toBe(2); // not vec4-sized: the flash pair
    for (const pos0 of [0, 250]) {
      d.queue.writeBuffer(step, 0, stepValues(pos0));
      submit(d, ds);
      const got = new Float32Array(await readBack(d, out, 0, s.M * s.nH * s.hd * 4));
      expectClose(got, reference(s, q, kv, pos0), 1e-5, `recorded, pos0 ${pos0}`);
    }
  });
});
