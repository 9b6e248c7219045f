/**
 * Which backend runs the model: `onnx` (CPU), `webgpu` (our kernels on any adapter, llvmpipe included), or `auto`:
 * WebGPU only on a hardware adapter, else ONNX Runtime. A WebGPU backend that fails to load falls back to ONNX Runtime
 * with a warning, and one that loses its device later moves to ONNX Runtime mid-session (FallbackBackend).
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

export async function selectBackend(model: ModelDir, o: SelectOptions, warn: (message: string) => void): Promise<Backend> {
  const name = o.backend ?? 'auto';
  const onnx = () => loadOnnxBackend(model, { weights: o.weights, threads: o.threads });
  if (name === 'onnx') return onnx();
  if (name === 'auto' && (!mayHaveGpu() || model.layout !== 'safetensors' || (o.weights && o.weights !== 'f32' && o.weights !== 'q8' && o.weights !== 'q4'))) return onnx();
  try {
    const { loadWebGpuBackend } = await import('./webgpu/webgpu-backend.js');
    const gpu = await loadWebGpuBackend(model, { weights: o.weights, allowSoftware: name === 'webgpu' });
    return new FallbackBackend(gpu, onnx, warn);
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
