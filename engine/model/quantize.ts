/**
 * Block quantization in the layout onnxruntime's `com.microsoft.MatMulNBits` takes for its B input.
 *
 * A Linear weight [N][K] (out x in, Hugging Face's layout) is cut along K into blocks of `block` values. Each block
 * gets one f32 scale and stores unsigned codes q with value (q - zp) * scale, zp = 2^(bits-1) (the op's default
 * when no zero_points input is given: 8 for 4-bit, 128 for 8-bit). Layout: data [N][ceil(K/block)][block*bits/8],
 * 4-bit codes two per byte, element 2j in the low nibble and 2j+1 in the high one; scales [N * ceil(K/block)],
 * row-major. A ragged last block is padded with zeros (code zp), which contribute nothing to the product.
 *
 * Scale choice: symmetric, scale = absmax / (2^(bits-1) - 1). The block's largest magnitude lands exactly on +-7
 * (4-bit) or +-127 and every other value is within half a step of its code, so no value is clipped and zero stays
 * exact. The extra negative code (-8 / -128) goes unused: spending it (scale = absmax / 8) would make steps 12.5%
 * finer but clip the largest positive values by up to a whole step, and the outliers are what matters most in
 * LLM weights. Asymmetric (min/max with a zero point) would cost a zero_points input for little gain on weights,
 * which are centred on zero.
 */
export interface QuantizedBlocks {
  /** Codes, [N][ceil(K/block)][block*bits/8]. */
  data: Uint8Array;
  /** One f32 scale per block, [N * ceil(K/block)]. */
  scales: Float32Array;
}

function checkParams(N: number, K: number, bits: number, block: number): void {
  if (!Number.isSafeInteger(N) || N <= 0 || !Number.isSafeInteger(K) || K <= 0) throw new RangeError(`quantize: invalid shape [${N}, ${K}]`);
  if (bits !== 4 && bits !== 8) throw new RangeError(`quantize: bits must be 4 or 8, got ${bits}`);
  // MatMulNBits requires a power of two of at least 16.
  if (!Number.isInteger(block) || block < 16 || (block & (block - 1)) !== 0) throw new RangeError(`quantize: block size must be a power of two >= 16, got ${block}`);
}

export function quantizeBlocks(w: Float32Array, N: number, K: number, bits: 4 | 8, block: number): QuantizedBlocks {
  checkParams(N, K, bits, block);
  if (w.length !== N * K) throw new RangeError(`quantize: ${w.length} values for [${N}, ${K}]`);
  const nBlocks = Math.ceil(K / block);
  const blob = (block * bits) / 8;
  const zp = 1 << (bits - 1);
  const qmax = zp - 1;
  const codeMax = 2 * zp - 1;
  const data = new Uint8Array(N * nBlocks * blob);
  const scales = new Float32Array(N * nBlocks);
  if (bits === 4) data.fill(zp | (zp << 4)); // padding codes are zp (value 0); real codes overwrite both nibbles
  for (let n = 0; n < N; n++) {
    const row = n * K;
    for (let b = 0; b < nBlocks; b++) {
      const k0 = b * block;
      const k1 = Math.min(k0 + block, K);
      let amax = 0;
      for (let k = k0; k < k1; k++) {
        const a = Math.abs(w[row + k]!);
        if (!(a <= 3.4028234663852886e38)) throw new RangeError(`quantize: non-finite weight ${w[row + k]} at row ${n}, column ${k}`);
        if (a > amax) amax = a;
      }
      // Round the scale to f32 first and quantize with the stored value, so codes are nearest for exactly the
      // scale the kernel will multiply by.
      const scale = Math.fround(amax / qmax);
      scales[n * nBlocks + b] = scale;
      const inv = scale > 0 ? 1 / scale : 0;
      const out = (n * nBlocks + b) * blob;
      if (bits === 8) {
        for (let k = k0; k < k1; k++) data[out + k - k0] = Math.max(0, Math.min(codeMax, Math.round(w[row + k]! * inv) + zp));
        for (let j = k1 - k0; j < block; j++) data[out + j] = zp;
      } else {
        for (let k = k0; k < k1; k++) {
          const j = k - k0;
          const q = Math.max(0, Math.min(codeMax, Math.round(w[row + k]! * inv) + zp));
          const at = out + (j >> 1);
          data[at] = j & 1 ? (data[at]! & 0x0f) | (q << 4) : (data[at]! & 0xf0) | q;
        }
      }
    }
  }
  return { data, scales };
}

/** The f32 matrix [N][K] that MatMulNBits computes with: (code - zp) * scale. The reference for tests. */
export function dequantize(q: QuantizedBlocks, N: number, K: number, bits: 4 | 8, block: number): Float32Array {
  checkParams(N, K, bits, block);
  const nBlocks = Math.ceil(K / block);
  const blob = (block * bits) / 8;
  if (q.data.length !== N * nBlocks * blob || q.scales.length !== N * nBlocks)
    throw new RangeError(`dequantize: ${q.data.length} code bytes and ${q.scales.length} scales do not fit [${N}, ${K}] in ${bits}-bit blocks of ${block}`);
  const zp = 1 << (bits - 1);
  const out = new Float32Array(N * K);
  for (let n = 0; n < N; n++)
    for (let k = 0; k < K; k++) {
      const b = Math.floor(k / block);
      const j = k - b * block;
      const base = (n * nBlocks + b) * blob;
      const code = bits === 8 ? q.data[base + j]! : (q.data[base + (j >> 1)]! >> (j & 1 ? 4 : 0)) & 0xf;
      out[n * K + k] = (code - zp) * q.scales[n * nBlocks + b]!;
    }
  return out;
}
