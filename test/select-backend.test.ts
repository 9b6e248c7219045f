/**
 * Backend selection: what `auto` does with a GPU-only weight format on a machine that ends up on the CPU.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { selectBackend } from '../engine/backends/select.js';
import { BadInputError } from '../engine/errors.js';
import { openModelDir } from '../engine/model/directory.js';
import { ensureFixtureModel } from '../engine/model/fixtures.js';

describe('selectBackend on the CPU', () => {
  const saved = process.env.MGD_NO_WEBGPU;
  afterEach(() => {
    if (saved === undefined) delete process.env.MGD_NO_WEBGPU;
    else process.env.MGD_NO_WEBGPU = saved;
  });

  it('auto with f16 weights runs f32 on onnx and says so', async () => {
    process.env.MGD_NO_WEBGPU = '1';
    const warnings: string[] = [];
    const backend = await selectBackend(openModelDir(ensureFixtureModel('tiny')), { backend: 'auto', weights: 'f16', threads: 1 }, (m) => warnings.push(m));
    try {
      expect(backend.info.name).toBe('onnx');
      expect(backend.info.weights).toBe('f32');
      expect(warnings).toEqual(['f16 weights run on the webgpu backend only; running f32 on onnx']);
      const logits = await backend.forward(backend.createCache(), [1, 2, 3]);
      expect(logits.length).toBe(backend.config.vocabSize);
    } finally {
      await backend.dispose();
    }
  });

  it('onnx asked for explicitly refuses f16 with a one-line error', async () => {
    const err = await selectBackend(openModelDir(ensureFixtureModel('tiny')), { backend: 'onnx', weights: 'f16' }, () => {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BadInputError);
    expect((err as Error).message).toMatch(/^f16 weights run on the webgpu backend only[^\n]*$/);
  });
});
