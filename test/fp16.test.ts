/**
 * f16 / bf16 conversions against an independent arithmetic reference: every f16 and bf16 pattern widens exactly,
 * every exact tie between two neighbours narrows to the even one, and a sweep of f32 bit patterns across the whole
 * range (normals, subnormals, overflow) narrows to the nearest value.
 */
import { describe, expect, it } from 'vitest';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../engine/model/fp16.js';

const f16 = (x: number) => f32ToF16(Float32Array.of(x))[0]!;
const back16 = (h: number) => f16ToF32(Uint16Array.of(h))[0]!;
const fromBits = (bits: number[]) => new Float32Array(Uint32Array.from(bits).buffer);
const isNaN16 = (h: number) => (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
const isNaNBf16 = (b: number) => (b & 0x7f80) === 0x7f80 && (b & 0x7f) !== 0;

/** The value of an f16 pattern, by the definition of the format. */
function halfValue(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 31) return m ? NaN : s * Infinity;
  return e === 0 ? s * m * 2 ** -24 : s * (1024 + m) * 2 ** (e - 25);
}

function roundHalfEven(q: number): number {
  const f = Math.floor(q);
  const d = q - f;
  return d > 0.5 || (d === 0.5 && f % 2 === 1) ? f + 1 : f;
}

/** The f16 pattern nearest to x (ties to even), computed in f64 arithmetic, independently of the implementation. */
function referenceHalf(x: number): number {
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a >= 65520) return sign | 0x7c00; // 65520 = halfway from 65504 to 2^16
  if (a < 2 ** -14) return sign | roundHalfEven(a * 2 ** 24); // may give 0x400, the smallest normal: still right
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--; // log2 can be off by one ulp near powers of two
  if (2 ** (e + 1) <= a) e++;
  let m = roundHalfEven(a * 2 ** (10 - e)); // 1024 .. 2048
  if (m === 2048) {
    m = 1024;
    e++;
  }
  return sign | ((e + 15) << 10) | (m - 1024);
}

describe('f16', () => {
  it('encodes exact values, limits, subnormals, signed zero, inf and NaN', () => {
    expect(f16(1)).toBe(0x3c00);
    expect(f16(-2)).toBe(0xc000);
    expect(f16(65504)).toBe(0x7bff);
    expect(f16(65519.99)).toBe(0x7bff);
    expect(f16(65520)).toBe(0x7c00); // the tie above the largest finite value rounds to even: infinity
    expect(f16(1e10)).toBe(0x7c00);
    expect(f16(-1e10)).toBe(0xfc00);
    expect(f16(2 ** -14)).toBe(0x0400); // smallest normal
    expect(f16(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(f16(1023 * 2 ** -24)).toBe(0x03ff); // largest subnormal
    expect(f16(-3 * 2 ** -24)).toBe(0x8003);
    expect(f16(2 ** -25)).toBe(0x0000); // exactly half the smallest subnormal: tie to even (zero)
    expect(f16(2 ** -25 * 1.0001)).toBe(0x0001);
    expect(f16(2 ** -26)).toBe(0x0000);
    expect(f16(-(2 ** -26))).toBe(0x8000);
    expect(f16(1e-45)).toBe(0x0000); // an f32 subnormal
    expect(f16(0)).toBe(0x0000);
    expect(f16(-0)).toBe(0x8000);
    expect(f16(Infinity)).toBe(0x7c00);
    expect(f16(-Infinity)).toBe(0xfc00);
    expect(isNaN16(f16(NaN))).toBe(true);
    // A NaN whose payload lives only in the low bits must not become infinity.
    const nans = f32ToF16(fromBits([0x7f800001, 0xff800001, 0x7fc00000]));
    expect(Array.from(nans, isNaN16)).toEqual([true, true, true]);
    expect(nans[1]! & 0x8000).toBe(0x8000);
  });

  it('decodes subnormals, signed zero, inf and NaN', () => {
    expect(back16(0x0001)).toBe(2 ** -24);
    expect(back16(0x03ff)).toBe(1023 * 2 ** -24);
    expect(back16(0x8001)).toBe(-(2 ** -24));
    expect(back16(0x0400)).toBe(2 ** -14);
    expect(Object.is(back16(0x8000), -0)).toBe(true);
    expect(back16(0x7c00)).toBe(Infinity);
    expect(back16(0xfc00)).toBe(-Infinity);
    expect(Number.isNaN(back16(0x7e00))).toBe(true);
    expect(Number.isNaN(back16(0xfc01))).toBe(true);
  });

  it('rounds exact ties to even, in normals, subnormals and across binades', () => {
    expect(f16(1 + 2 ** -11)).toBe(0x3c00); // between 1 (even) and 1 + 2^-10 (odd)
    expect(f16(1 + 3 * 2 ** -11)).toBe(0x3c02); // between 1 + 2^-10 (odd) and 1 + 2^-9 (even)
    expect(f16(2 - 2 ** -11)).toBe(0x4000); // between 0x3bff (odd) and 2: carries into the exponent
    expect(f16(1.5 * 2 ** -24)).toBe(0x0002); // subnormal tie: 1.5 -> 2
    expect(f16(2.5 * 2 ** -24)).toBe(0x0002); // 2.5 -> 2
    expect(f16(1023.5 * 2 ** -24)).toBe(0x0400); // largest subnormal + half: up into the normals
    // Every tie between two adjacent finite f16 values (all exactly representable in f32), both signs.
    const mids: number[] = [];
    const want: number[] = [];
    for (let h = 0; h < 0x7bff; h++) {
      for (const s of [0, 0x8000]) {
        const mid = (halfValue(h) + halfValue(h + 1)) / 2;
        mids.push(s ? -mid : mid);
        want.push(s | (h & 1 ? h + 1 : h));
      }
    }
    const got = f32ToF16(Float32Array.from(mids));
    const wrong = want.filter((w, i) => got[i] !== w);
    expect(wrong.length).toBe(0);
  });

  it('narrows a sweep of f32 bit patterns to the nearest f16, as the reference does', () => {
    const bits: number[] = [];
    for (let b = 0; b < 2 ** 32; b += 8191) bits.push(b);
    const xs = fromBits(bits);
    const got = f32ToF16(xs);
    const wrong: string[] = [];
    for (let i = 0; i < xs.length; i++) {
      const x = xs[i]!;
      if (Number.isNaN(x)) {
        if (!isNaN16(got[i]!)) wrong.push(`NaN ${bits[i]!.toString(16)}`);
      } else if (got[i] !== referenceHalf(x)) wrong.push(`${x} -> ${got[i]!.toString(16)} (want ${referenceHalf(x).toString(16)})`);
    }
    expect(wrong.slice(0, 5)).toEqual([]);
  });

  it('widens every f16 exactly and narrows every non-NaN pattern back to itself', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const wide = f16ToF32(all);
    const back = f32ToF16(wide);
    const wrong: number[] = [];
    for (let h = 0; h < 65536; h++) {
      if (isNaN16(h)) {
        if (!Number.isNaN(wide[h]!) || !isNaN16(back[h]!)) wrong.push(h);
      } else if (!Object.is(wide[h]!, halfValue(h)) || back[h] !== h) wrong.push(h);
    }
    expect(wrong).toEqual([]);
  });
});

describe('bf16', () => {
  it('is the top half of f32, rounded to nearest even; NaN stays NaN; overflow goes to infinity', () => {
    expect(f32ToBf16(Float32Array.of(1))[0]).toBe(0x3f80);
    expect(f32ToBf16(Float32Array.of(1 + 2 ** -8))[0]).toBe(0x3f80); // tie -> even
    expect(f32ToBf16(Float32Array.of(1 + 3 * 2 ** -8))[0]).toBe(0x3f82); // tie -> even (up)
    expect(f32ToBf16(Float32Array.of(-0))[0]).toBe(0x8000);
    expect(f32ToBf16(Float32Array.of(Infinity, -Infinity))).toEqual(Uint16Array.of(0x7f80, 0xff80));
    expect(f32ToBf16(fromBits([0x7f7fffff]))[0]).toBe(0x7f80); // largest f32 rounds up past the largest bf16
    expect(f32ToBf16(fromBits([0x00000001, 0x00018000]))).toEqual(Uint16Array.of(0x0000, 0x0002)); // f32 subnormals
    const nans = f32ToBf16(fromBits([0x7fc00000, 0x7f800001, 0xffffffff, 0x7fff8000]));
    expect(Array.from(nans, isNaNBf16)).toEqual([true, true, true, true]);
    expect(nans[2]! & 0x8000).toBe(0x8000);
    expect(bf16ToF32(Uint16Array.of(0xc000))[0]).toBe(-2);
    expect(Number.isNaN(bf16ToF32(f32ToBf16(Float32Array.of(NaN)))[0])).toBe(true);
  });

  it('widens every pattern exactly and rounds every tie and near-tie correctly', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const wide = new Uint32Array(bf16ToF32(all).buffer);
    expect(wide.every((w, b) => w === b << 16 >>> 0)).toBe(true);
    const below: number[] = [];
    const tie: number[] = [];
    const above: number[] = [];
    const finite: number[] = [];
    for (let b = 0; b < 65536; b++) {
      if ((b & 0x7fff) >= 0x7f80) continue; // inf / NaN
      finite.push(b);
      below.push(((b << 16) | 0x7fff) >>> 0);
      tie.push(((b << 16) | 0x8000) >>> 0);
      above.push(((b << 16) | 0x8001) >>> 0);
    }
    const [lo, mid, hi] = [below, tie, above].map((bits) => f32ToBf16(fromBits(bits)));
    const wrong = finite.filter((b, i) => lo![i] !== b || hi![i] !== b + 1 || mid![i] !== (b & 1 ? b + 1 : b));
    expect(wrong).toEqual([]);
  });
});

describe('array handling', () => {
  it('writes into a given destination, of views at an offset, and refuses a wrong length', () => {
    const backing = Float32Array.of(99, 1, -2, 0.5, 99);
    const src = backing.subarray(1, 4);
    const h = new Uint16Array(3);
    expect(f32ToF16(src, h)).toBe(h);
    expect(Array.from(h)).toEqual([0x3c00, 0xc000, 0x3800]);
    const wide = new Float32Array(5);
    expect(Array.from(f16ToF32(h, wide.subarray(1, 4)))).toEqual([1, -2, 0.5]);
    expect(Array.from(wide)).toEqual([0, 1, -2, 0.5, 0]);
    const b = f32ToBf16(src);
    expect(Array.from(bf16ToF32(b, wide.subarray(2, 5)))).toEqual([1, -2, 0.5]);
    expect(() => f32ToF16(src, new Uint16Array(2))).toThrow(RangeError);
    expect(() => f16ToF32(h, new Float32Array(4))).toThrow(/destination has 4 elements for 3/);
    expect(() => f32ToBf16(src, new Uint16Array(4))).toThrow(RangeError);
    expect(() => bf16ToF32(b, new Float32Array(1))).toThrow(RangeError);
    expect(f32ToF16(new Float32Array(0)).length).toBe(0);
  });
});
