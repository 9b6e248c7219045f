/**
 * quantizeBlocks writes exactly the layout onnxruntime's MatMulNBits reads: a one-node model at accuracy level 0
 * (B dequantized to f32, f32 arithmetic) must reproduce A x dequantize(B)^T computed in float64, including K that
 * is not a multiple of the block. The byte layout is also pinned by hand-made blocks, and the quantization error is
 * bounded by half a step.
 */
import onnxPkg from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { dequantize, quantizeBlocks, type QuantizedBlocks } from '../engine/model/quantize.js';

const { onnx } = onnxPkg;
const BLOCK = 32;

function random(n: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s / 2 ** 32 - 0.5;
  });
}

const sessions: ort.InferenceSession[] = [];
afterAll(async () => {
  for (const s of sessions) await s.release();
});

/** Y = A · B^T through a one-node com.microsoft.MatMulNBits graph, B given as quantized blocks. */
async function runMatMulNBits(a: Float32Array, M: number, K: number, N: number, bits: 4 | 8, q: QuantizedBlocks): Promise<Float32Array> {
  const T = onnx.TensorProto.DataType;
  const A = onnx.AttributeProto.AttributeType;
  const nBlocks = Math.ceil(K / BLOCK);
  const model = onnx.ModelProto.create({
    irVersion: 10,
    opsetImport: [
      { domain: '', version: 21 },
      { domain: 'com.microsoft', version: 1 },
    ],
    graph: {
      name: 'g',
      node: [
        {
          opType: 'MatMulNBits',
          domain: 'com.microsoft',
          input: ['A', 'B', 'scales'],
          output: ['Y'],
          attribute: [
            { name: 'K', type: A.INT, i: K },
            { name: 'N', type: A.INT, i: N },
            { name: 'bits', type: A.INT, i: bits },
            { name: 'block_size', type: A.INT, i: BLOCK },
            { name: 'accuracy_level', type: A.INT, i: 0 },
          ],
        },
      ],
      input: [{ name: 'A', type: { tensorType: { elemType: T.FLOAT, shape: { dim: [{ dimValue: M }, { dimValue: K }] } } } }],
      output: [{ name: 'Y', type: { tensorType: { elemType: T.FLOAT, shape: { dim: [{ dimValue: M }, { dimValue: N }] } } } }],
      initializer: [
        { name: 'B', dataType: T.UINT8, dims: [N, nBlocks, (BLOCK * bits) / 8], rawData: q.data },
        { name: 'scales', dataType: T.FLOAT, dims: [N * nBlocks], rawData: new Uint8Array(q.scales.buffer, q.scales.byteOffset, q.scales.byteLength) },
      ],
    },
  });
  const session = await ort.InferenceSession.create(onnx.ModelProto.encode(model).finish(), { logSeverityLevel: 3, intraOpNumThreads: 1 });
  sessions.push(session);
  const out = await session.run({ A: new ort.Tensor('float32', a, [M, K]) });
  return out.Y!.data as Float32Array;
}

describe.each([8, 4] as const)('%i-bit blocks', (bits) => {
  it.each([
    [3, 64, 5],
    [2, 70, 3], // K not a multiple of the block: a zero-padded last block
    [1, 33, 4], // a last block with one value
    [2, 20, 17], // one ragged block only
  ])('match ORT MatMulNBits for M=%i K=%i N=%i', async (M, K, N) => {
    const w = random(N * K, 7 + K);
    const a = random(M * K, 11 + N);
    const q = quantizeBlocks(w, N, K, bits, BLOCK);
    expect(q.data.length).toBe(N * Math.ceil(K / BLOCK) * ((BLOCK * bits) / 8));
    expect(q.scales.length).toBe(N * Math.ceil(K / BLOCK));
    const deq = dequantize(q, N, K, bits, BLOCK);
    const y = await runMatMulNBits(a, M, K, N, bits, q);
    // Tolerance: ORT works on the same dequantized f32 values (code - zp) * scale, so the only difference is f32
    // rounding in its products and sums. The standard bound for a K-term f32 dot product is (K + 1) · u · Σ|a·w|
    // (u = 2^-24), plus one rounding per term should it form (code - zp) * scale differently; we allow (K + 2) · u,
    // doubled as headroom for fused or blocked accumulation. A layout mistake (nibble order, block stride, padding)
    // changes results by O(|a|·|w|), orders of magnitude above this.
    const u = 2 ** -24;
    const wrong: string[] = [];
    for (let m = 0; m < M; m++)
      for (let n = 0; n < N; n++) {
        let ref = 0;
        let mag = 0;
        for (let k = 0; k < K; k++) {
          ref += a[m * K + k]! * deq[n * K + k]!;
          mag += Math.abs(a[m * K + k]! * deq[n * K + k]!);
        }
        const tol = 2 * (K + 2) * u * mag;
        if (!(Math.abs(y[m * N + n]! - ref) <= tol)) wrong.push(`[${m},${n}] ort ${y[m * N + n]} vs ${ref} (tol ${tol})`);
        if (mag === 0) wrong.push(`[${m},${n}] degenerate test data`);
      }
    expect(wrong).toEqual([]);
  });

  it('quantization error is at most half a step per weight; the block maximum is exact', () => {
    const N = 4;
    const K = 96 + 7;
    const w = random(N * K, 3);
    const q = quantizeBlocks(w, N, K, bits, BLOCK);
    const deq = dequantize(q, N, K, bits, BLOCK);
    const qmax = (1 << (bits - 1)) - 1;
    const nBlocks = Math.ceil(K / BLOCK);
    for (let n = 0; n < N; n++)
      for (let b = 0; b < nBlocks; b++) {
        const k1 = Math.min(K, (b + 1) * BLOCK);
        let amax = 0;
        let at = 0;
        for (let k = b * BLOCK; k < k1; k++)
          if (Math.abs(w[n * K + k]!) > amax) {
            amax = Math.abs(w[n * K + k]!);
            at = n * K + k;
          }
        const step = q.scales[n * nBlocks + b]!;
        expect(step).toBeCloseTo(amax / qmax, 6);
        expect(deq[at]).toBeCloseTo(w[at]!, 6);
        for (let k = b * BLOCK; k < k1; k++) expect(Math.abs(deq[n * K + k]! - w[n * K + k]!)).toBeLessThanOrEqual(step / 2 + 1e-7);
      }
  });
});

describe('byte layout', () => {
  it('4-bit: element 2j in the low nibble, 2j+1 in the high one, zero point 8, padding codes 8', () => {
    // One row, K = 35: a full block then a ragged block of 3. Block 0 has absmax 7, so scale 1 and code = value + 8.
    const K = 35;
    const w = new Float32Array(K);
    w[0] = -7;
    w[1] = 3;
    w[2] = 0;
    w[3] = 7;
    w[31] = -1;
    w[32] = 14; // block 1: absmax 14, scale 2
    w[33] = -2;
    w[34] = 1; // 0.5 steps: Math.round(0.5) = 1 -> code 9
    const q = quantizeBlocks(w, 1, K, 4, BLOCK);
    expect(Array.from(q.scales)).toEqual([1, 2]);
    expect(q.data.length).toBe(32);
    expect(q.data[0]).toBe(0xb1); // low: -7 -> 1, high: 3 -> 11
    expect(q.data[1]).toBe(0xf8); // low: 0 -> 8, high: 7 -> 15
    expect(q.data[15]).toBe(0x78); // element 30 -> 8 (low), element 31 = -1 -> 7 (high)
    expect(q.data[16]).toBe(0x7f); // block 1: 14/2 = 7 -> 15 (low), -2/2 = -1 -> 7 (high)
    expect(q.data[17]).toBe(0x89); // 1/2 = 0.5 -> 1 -> 9 (low), padding -> 8 (high)
    expect(Array.from(q.data.subarray(18))).toEqual(new Array(14).fill(0x88));
    expect(Array.from(dequantize(q, 1, K, 4, BLOCK).subarray(32))).toEqual([14, -2, 2]);
  });

  it('8-bit: one byte per element, zero point 128, rows and blocks in row-major order', () => {
    const N = 2;
    const K = 40;
    const w = new Float32Array(N * K);
    w[0] = 127; // row 0 block 0: scale 1
    w[1] = -127;
    w[2] = 5;
    w[32] = 2.54; // row 0 block 1: scale 0.02
    w[33] = -1;
    w[K] = 0.5; // row 1 block 0: scale 0.5/127
    const q = quantizeBlocks(w, N, K, 8, BLOCK);
    expect(q.data.length).toBe(N * 2 * 32);
    expect(Array.from(q.data.subarray(0, 3))).toEqual([255, 1, 133]);
    expect(Array.from(q.data.subarray(32, 34))).toEqual([255, 128 - 50]);
    expect(Array.from(q.data.subarray(40, 64))).toEqual(new Array(24).fill(128)); // padding of row 0's last block
    expect(q.data[64]).toBe(255); // row 1 starts after row 0's two blocks
    expect(Array.from(q.scales)).toEqual([1, Math.fround(2.54 / 127), Math.fround(0.5 / 127), 0]);
  });

  it('an all-zero block has scale 0 and dequantizes to zeros', () => {
    for (const bits of [4, 8] as const) {
      const q = quantizeBlocks(new Float32Array(64), 1, 64, bits, BLOCK);
      expect(Array.from(q.scales)).toEqual([0, 0]);
      expect(dequantize(q, 1, 64, bits, BLOCK).every((v) => v === 0)).toBe(true);
    }
  });

  it('rejects bad shapes, block sizes, bit widths and non-finite weights', () => {
    expect(() => quantizeBlocks(new Float32Array(6), 2, 4, 4, BLOCK)).toThrow(/6 values for \[2, 4\]/);
    expect(() => quantizeBlocks(new Float32Array(0), 0, 4, 4, BLOCK)).toThrow(/invalid shape/);
    expect(() => quantizeBlocks(new Float32Array(32), 1, 32, 4, 24)).toThrow(/power of two >= 16/);
    expect(() => quantizeBlocks(new Float32Array(32), 1, 32, 4, 8)).toThrow(/power of two >= 16/);
    expect(() => quantizeBlocks(new Float32Array(32), 1, 32, 3 as 4, BLOCK)).toThrow(/bits must be 4 or 8/);
    const w = new Float32Array(64);
    w[40] = NaN;
    expect(() => quantizeBlocks(w, 2, 32, 8, BLOCK)).toThrow(/non-finite weight NaN at row 1, column 8/);
    w[40] = -Infinity;
    expect(() => quantizeBlocks(w, 2, 32, 4, BLOCK)).toThrow(/non-finite weight -Infinity/);
    const q = quantizeBlocks(new Float32Array(64), 2, 32, 4, BLOCK);
    expect(() => dequantize(q, 2, 32, 8, BLOCK)).toThrow(/do not fit/);
  });
});
