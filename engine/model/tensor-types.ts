/** Element types the safetensors reader understands, and their sizes. */
export type DType = 'F32' | 'F16' | 'BF16';
export const DTYPE_BYTES: Record<DType, number> = { F32: 4, F16: 2, BF16: 2 };

/** A tensor's description in a checkpoint (data not read yet). */
export interface TensorInfo {
  name: string;
  /** The stored element type: a DType, or what a reader lists but cannot widen (safetensors' I8), or a GGUF type (Q4_K). */
  dtype: DType | (string & {});
  shape: number[];
}

/**
 * Read access to a checkpoint's tensors by Hugging Face name (e.g. `model.layers.0.self_attn.q_proj.weight`),
 * whether one model.safetensors or shards listed in model.safetensors.index.json.
 * Reads are lazy: a 0.5B model's weights are streamed tensor by tensor, never held twice.
 */
export interface WeightSource {
  has(name: string): boolean;
  info(name: string): TensorInfo;
  names(): string[];
  /** The tensor's values widened to f32 (from f16/bf16 as needed), row-major. */
  readF32(name: string): Float32Array;
  /** The tensor's stored bytes, as in the file. */
  readRaw(name: string): Uint8Array;
  close(): void;
}
