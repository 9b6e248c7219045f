/**
 * quantizeBlocks writes exactly the layout onnxruntime's MatMulNBits reads: a one-node model at accuracy level 0
 * (f32 arithmetic) must reproduce A x dequantize(B)^T. Tolerance 1e-5 relative: only f32 summation order differs.
 */
import onnxPkg from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { dequantize, quantizeBlocks } from '../engine/model/quantize.js';

const { onnx } = onnxPkg;

function random(n: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s / 2 ** 32 - 0.5;
  });
}

async function runMatMulNBits(a: Float32Array, M: number, K: number, N: number, bits: 4 | 8, q: { data: Uint8Array; scales: Float32Array }): Promise<Float32Array> {
  const T = onnx.TensorProto.DataType;
  const A = onnx.AttributeProto.AttributeType;
  const nBlocks = Math.ceil(K / 32);
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
            { name: 'block_size', type: A.INT, i: 32 },
            { name: 'accuracy_level', type: A.INT, i: 0 },
          ],
        },
      ],
      input: [{ name: 'A', type: { tensorType: { elemType: T.FLOAT, shape: { dim: [{ dimValue: M }, { dimValue: K }] } } } }],
      output: [{ name: 'Y', type: { tensorType: { elemType: T.FLOAT, shape: { dim: [{ dimValue: M }, { dimValue: N }] } } } }],
      initializer: [
        { name: 'B', dataType: T.UINT8, dims: [N, nBlocks, (32 * bits) / 8], rawData: q.data },
        { name: 'scales', dataType: T.FLOAT, dims: [N * nBlocks], rawData: new Uint8Array(q.scales.buffer) },
      ],
    },
  });
  const session = await ort.InferenceSession.create(onnx.ModelProto.encode(model).finish(), { logSeverityLevel: 3 });
  const out = await session.run({ A: new ort.Tensor('float32', a, [M, K]) });
  await session.release();
  return out.Y!.data as Float32Array;
}

describe.each([8, 4] as const)('%i-bit blocks', (bits) => {
  it.each([
    [3, 64, 5],
    [2, 70, 3], // K not a multiple of the block: a zero-padded last block
    [1, 33, 4],
  ])('match ORT MatMulNBits for M=%i K=%i N=%i', async (M, K, N) => {
    const w = random(N * K, 7 + K);
    const a = random(M * K, 11 + N);
    const q = quantizeBlocks(w, N, K, bits, 32);
    const deq = dequantize(q, N, K, bits, 32);
    const y = await runMatMulNBits(a, M, K, N, bits, q);
    let scale = 0;
    for (let m = 0; m < M; m++)
      for (let n = 0; n < N; n++) {
        let ref = 0;
        for (let k = 0; k < K; k++) ref += a[m * K + k]! * deq[n * K + k]!;
        scale = Math.max(scale, Math.abs(ref));
        expect(Math.abs(y[m * N + n]! - ref)).toBeLessThanOrEqual(1e-5 * (1 + Math.abs(ref)));
      }
    expect(scale).toBeGreaterThan(0);
  });

  it('quantization error is bounded by half a step per weight', () => {
    const N = 4;
    const K = 96;
    const w = random(N * K, 3);
    const deq = dequantize(quantizeBlocks(w, N, K, bits, 32), N, K, bits, 32);
    const qmax = (1 << (bits - 1)) - 1;
    for (let n = 0; n < N; n++)
      for (let b = 0; b < K / 32; b++) {
        let amax = 0;
        for (let k = b * 32; k < (b + 1) * 32; k++) amax = Math.max(amax, Math.abs(w[n * K + k]!));
        const step = amax / qmax;
        for (let k = b * 32; k < (b + 1) * 32; k++) expect(Math.abs(deq[n * K + k]! - w[n * K + k]!)).toBeLessThanOrEqual(step / 2 + 1e-7);
      }
  });
});
