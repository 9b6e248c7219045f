/**
 * Half-precision conversions over whole arrays: IEEE binary16 (f16) and bfloat16 (bf16) to and from f32.
 * Checkpoints store f16/bf16; the CPU backend computes in f32. Narrowing rounds to nearest, ties to even, keeps
 * subnormals, infinities and NaN (quieted, sign and top payload bits kept). Nothing is allocated per element: the
 * loops work on the f32 bit patterns through one Uint32Array view per call.
 *
 * Each function writes into `dst` when given (it must have src's length, so a caller can reuse one buffer) and
 * returns it.
 */

function checkLengths(what: string, src: number, dst: number): void {
  if (src !== dst) throw new RangeError(`${what}: destination has ${dst} elements for ${src} source elements`);
}

/** One f16 bit pattern to its value (used once per pattern, to fill the table). */
function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24; // zero / subnormal
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

// Every f16 pattern's f32 bits (256 KiB), built on first use: widening is then one lookup per element, which beats
// the branches a table-free conversion needs for subnormals. Bits rather than values so NaN payloads survive.
let table: Uint32Array | null = null;
function f16Table(): Uint32Array {
  if (!table) {
    const values = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) values[h] = halfToFloat(h);
    table = new Uint32Array(values.buffer);
    // NaNs: sign, quiet bit and payload moved up by 13 bits, as hardware conversions do.
    for (let h = 0; h < 65536; h++)
      if ((h & 0x7c00) === 0x7c00 && h & 0x3ff) table[h] = (((h & 0x8000) << 16) | 0x7f800000 | ((h & 0x3ff) << 13)) >>> 0;
  }
  return table;
}

export function f16ToF32(src: Uint16Array, dst = new Float32Array(src.length)): Float32Array {
  checkLengths('f16ToF32', src.length, dst.length);
  const t = f16Table();
  const out = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
  for (let i = 0; i < src.length; i++) out[i] = t[src[i]!]!;
  return dst;
}

/** f32 to f16, rounding to nearest even; overflow to infinity, underflow through subnormals to (signed) zero. */
export function f32ToF16(src: Float32Array, dst = new Uint16Array(src.length)): Uint16Array {
  checkLengths('f32ToF16', src.length, dst.length);
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < bits.length; i++) dst[i] = halfBits(bits[i]!);
  return dst;
}

/** The f16 pattern nearest to the f32 with bit pattern `x` (ties to even). */
function halfBits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const abs = x & 0x7fffffff;
  if (abs >= 0x7f800000) return abs === 0x7f800000 ? sign | 0x7c00 : sign | 0x7e00 | ((abs >>> 13) & 0x3ff); // inf / NaN
  // 65520 (0x477ff000) is the tie between 65504 (max f16, odd mantissa) and 65536: it and above go to infinity.
  if (abs >= 0x477ff000) return sign | 0x7c00;
  const e = abs >>> 23;
  if (e >= 113) {
    // Normal f16: rebias the exponent (127 -> 15) and drop 13 mantissa bits, rounding. A carry out of the
    // mantissa correctly bumps the exponent.
    const h = (abs - 0x38000000) >>> 13;
    const rem = abs & 0x1fff;
    return sign | (h + (rem > 0x1000 || (rem === 0x1000 && h & 1) ? 1 : 0));
  }
  // Below 2^-14 the f16 is subnormal: its value in units of 2^-24 is the 24-bit significand shifted right.
  // Below 2^-25 (exponent < 102, incl. f32 subnormals) even rounding up cannot reach the smallest subnormal.
  if (e < 102) return sign;
  const m = (abs & 0x7fffff) | 0x800000;
  const shift = 126 - e; // 14 .. 24
  const h = m >>> shift;
  const rem = m & ((1 << shift) - 1);
  const halfway = 1 << (shift - 1);
  return sign | (h + (rem > halfway || (rem === halfway && h & 1) ? 1 : 0)); // may round up to 0x0400, the smallest normal
}

/** bf16 is the top half of an f32: widening is a shift. */
export function bf16ToF32(src: Uint16Array, dst = new Float32Array(src.length)): Float32Array {
  checkLengths('bf16ToF32', src.length, dst.length);
  const out = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
  for (let i = 0; i < src.length; i++) out[i] = src[i]! << 16;
  return dst;
}

/** f32 to bf16: the top 16 bits, rounded to nearest even (overflowing to infinity); NaN stays NaN (quieted). */
export function f32ToBf16(src: Float32Array, dst = new Uint16Array(src.length)): Uint16Array {
  checkLengths('f32ToBf16', src.length, dst.length);
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < bits.length; i++) {
    const b = bits[i]!;
    // Rounding a NaN could carry its payload away (to infinity): keep the top bits and set the quiet bit instead.
    if ((b & 0x7fffffff) > 0x7f800000) dst[i] = (b >>> 16) | 0x40;
    else dst[i] = (b + 0x7fff + ((b >>> 16) & 1)) >>> 16; // adding just under half, plus the kept LSB, is RNE
  }
  return dst;
}
