/**
 * Block quantization in the layout onnxruntime's `com.microsoft.MatMulNBits` takes for its B input.
 *
 * A Linear weight [N][K] (out x in, Hugging Face's layout) is cut along K into blocks of `block` values. Each block
 * gets one f32 scale and stores unsigned codes q with value (q - zp) * scale, zp = 2^(bits-1) (the op's default
 * when no zero_points input is given: 8 for 4-bit, 128 for 8-bit). Layout: data [N][ceil(K/block)][block*bits/8],
 * 4-bit codes two per byte, element 2j in the low nibble; scales [N * ceil(K/block)]. A ragged last block is padded
 * with zeros.
 *
 * Symmetric scale = absmax / (2^(bits-1) - 1): the largest magnitude lands exactly on +-7 (4-bit) or +-127, and
 * the extra negative code (-8 / -128) simply goes unused. This keeps zero exact and costs less than a zero point
 * lookup at run time; for weights (roughly symmetric around 0) it loses little against asymmetric schemes.
 */
export interface QuantizedBlocks {
  data: Uint8Array;
  scales: Float32Array;
}

export function quantizeBlocks(w: Float32Array, N: number, K: number, bits: 4 | 8, block: number): QuantizedBlocks {
  if (w.length !== N * K) throw new RangeError(`quantize: ${w.length} values for [${N}, ${K}]`);
  if (block % 2 !== 0) throw new RangeError('quantize: block size must be even');
  const nBlocks = Math.ceil(K / block);
  const blob = (block * bits) / 8;
  const zp = 1 << (bits - 1);
  const qmax = zp - 1;
  const data = new Uint8Array(N * nBlocks * blob);
  const scales = new Float32Array(N * nBlocks);
  for (let n = 0; n < N; n++) {
    const row = n * K;
    for (let b = 0; b < nBlocks; b++) {
      const k0 = b * block;
      const k1 = Math.min(k0 + block, K);
      let amax = 0;
      for (let k = k0; k < k1; k++) amax = Math.max(amax, Math.abs(w[row + k]!));
      const scale = amax / qmax;
      scales[n * nBlocks + b] = scale;
      const inv = scale > 0 ? 1 / scale : 0;
      const out = (n * nBlocks + b) * blob;
      for (let j = 0; j < block; j++) {
        const k = k0 + j;
        const v = k < k1 ? w[row + k]! : 0;
        const q = Math.max(0, Math.min(2 * zp - 1, Math.round(v * inv) + zp));
        if (bits === 8) data[out + j] = q;
        else data[out + (j >> 1)]! |= j & 1 ? q << 4 : q;
      }
    }
  }
  return { data, scales };
}

/** The f32 matrix [N][K] that MatMulNBits computes with: the reference for tests. */
export function dequantize(q: QuantizedBlocks, N: number, K: number, bits: 4 | 8, block: number): Float32Array {
  const nBlocks = Math.ceil(K / block);
  const blob = (block * bits) / 8;
  const zp = 1 << (bits - 1);
  const out = new Float32Array(N * K);
  for (let n = 0; n < N; n++)
    for (let k = 0; k < K; k++) {
      const b = Math.floor(k / block);
      const j = k % block;
      const base = (n * nBlocks + b) * blob;
      const code = bits === 8 ? q.data[base + j]! : (q.data[base + (j >> 1)]! >> (j & 1 ? 4 : 0)) & 0xf;
      out[n * K + k] = (code - zp) * q.scales[n * nBlocks + b]!;
    }
  return out;
}
