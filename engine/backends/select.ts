/**
 * Which backend runs the model: `onnx` (CPU), `webgpu` (our kernels on any adapter, llvmpipe included), or `auto`:
 * WebGPU only on a hardware adapter, else ONNX Runtime. A WebGPU backend that fails to load falls back to ONNX Runtime
 * with a warning, and one that loses its device later moves to ONNX Runtime mid-session (FallbackBackend).
 * f16 weights run on WebGPU only: ONNX Runtime refuses them (onnxWeights), except where `auto` lands on the CPU or
 * as the device-loss fallback, which both continue on the checkpoint's f32 weights (our ONNX graph has no f16 form, and f32 is the more precise of the two).
 */
import { BadInputError, oneLine } from '../errors.js';
import type { ModelDir } from '../model/directory.js';
import type { Backend, BackendName, WeightFormat } from './backend.js';
import { loadOnnxBackend } from './onnx/onnx-backend.js';
import { FallbackBackend } from './webgpu/fallback-backend.js';
import { nativeGpuApiPresent } from '../../kernels/gpu.js';

export interface SelectOptions {
  backend?: BackendName | 'auto';
  weights?: WeightFormat;
  threads?: number;
}

/** The weights ONNX Runtime is asked for: the same, but f16 is refused with a one-line BadInputError. */
export function onnxWeights(weights: WeightFormat | undefined): WeightFormat | undefined {
  if (weights === 'f16') throw new BadInputError('f16 weights run on the webgpu backend only (--backend webgpu); the onnx backend runs f32, q8 or q4');
  return weights;
}

export async function selectBackend(model: ModelDir, o: SelectOptions, warn: (message: string) => void): Promise<Backend> {
  const name = o.backend ?? 'auto';
  // f16 is a GPU format: where the model lands on the CPU anyway (`auto`, or after a device loss) the checkpoint runs
  // in f32 (more precise, and our ONNX graph has no f16 form); asked of onnx explicitly, f16 is refused.
  const cpuWeights = o.weights === 'f16' ? 'f32' : o.weights;
  const onnx = () => {
    if (name === 'auto' && o.weights === 'f16') warn('f16 weights run on the webgpu backend only; running f32 on onnx');
    return loadOnnxBackend(model, { weights: name === 'auto' ? cpuWeights : onnxWeights(o.weights), threads: o.threads, warn });
  };
  if (name === 'onnx') return onnx();
  if (name === 'auto' && (!mayHaveGpu() || model.layout === 'onnx')) return onnx();
  try {
    const { loadWebGpuBackend } = await import('./webgpu/webgpu-backend.js');
    const gpu = await loadWebGpuBackend(model, { weights: o.weights, allowSoftware: name === 'webgpu' });
    const afterLoss = () => loadOnnxBackend(model, { weights: cpuWeights, threads: o.threads, warn });
    return new FallbackBackend(gpu, afterLoss, warn);
  } catch (e) {
    if (name === 'webgpu') {
      if (e instanceof BadInputError) throw e;
      warn(`webgpu backend unavailable (${oneLine(e)}); using onnx`);
    }
    return onnx();
  }
}

function mayHaveGpu(): boolean {
  return !process.env.MGD_NO_WEBGPU && nativeGpuApiPresent();
}
