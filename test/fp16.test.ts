import { describe, expect, it } from 'vitest';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../engine/model/fp16.js';

const f16 = (x: number) => f32ToF16(Float32Array.of(x))[0]!;
const back16 = (h: number) => f16ToF32(Uint16Array.of(h))[0]!;

describe('f16', () => {
  it('encodes exact values, limits, subnormals, inf and NaN', () => {
    expect(f16(1)).toBe(0x3c00);
    expect(f16(-2)).toBe(0xc000);
    expect(f16(65504)).toBe(0x7bff);
    expect(f16(65520)).toBe(0x7c00); // rounds up past the largest finite value
    expect(f16(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(f16(2 ** -14)).toBe(0x0400); // smallest normal
    expect(f16(2 ** -26)).toBe(0x0000); // below half the smallest subnormal
    expect(f16(Infinity)).toBe(0x7c00);
    expect(f16(-Infinity)).toBe(0xfc00);
    expect(Number.isNaN(back16(f16(NaN)))).toBe(true);
    expect(Object.is(back16(f16(-0)), -0)).toBe(true);
  });
  it('rounds ties to even', () => {
    // 1 + 2^-11 lies halfway between 1 and 1 + 2^-10: even mantissa (1) wins
    expect(f16(1 + 2 ** -11)).toBe(0x3c00);
    // 1 + 3·2^-11 lies halfway between 1 + 2^-10 (odd) and 1 + 2^-9 (even)
    expect(f16(1 + 3 * 2 ** -11)).toBe(0x3c02);
    // subnormal tie: 1.5 · 2^-24 -> 2 · 2^-24 (even)
    expect(f16(1.5 * 2 ** -24)).toBe(0x0002);
  });
  it('round-trips every finite f16 value', () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const again = f32ToF16(f16ToF32(all));
    for (let h = 0; h < 65536; h++) {
      const isNaN = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
      if (!isNaN) expect(again[h]).toBe(h);
    }
  });
});

describe('bf16', () => {
  it('is the top half of f32, rounded to nearest even; NaN stays NaN', () => {
    expect(f32ToBf16(Float32Array.of(1))[0]).toBe(0x3f80);
    expect(f32ToBf16(Float32Array.of(1 + 2 ** -8))[0]).toBe(0x3f80); // tie -> even
    expect(f32ToBf16(Float32Array.of(1 + 3 * 2 ** -8))[0]).toBe(0x3f82);
    expect(Number.isNaN(bf16ToF32(f32ToBf16(Float32Array.of(NaN)))[0])).toBe(true);
    expect(bf16ToF32(Uint16Array.of(0xc000))[0]).toBe(-2);
  });
});
