/**
 * The backend contract shared by every way of running the model (onnxruntime-node on the CPU, our WebGPU kernels).
 *
 * A backend is stateless across requests: all per-sequence state lives in explicit KV-cache handles, created by the
 * backend and owned by the caller (the engine, later engine/cache). A handle records which tokens it holds, so the
 * caller can find the longest reusable prefix, `truncate` back to it, and `fork` it for parallel or speculative
 * decodes. Forks share storage until one of them changes; handles are freed explicitly.
 */
import type { ModelConfig } from '../model/config.js';
import type { LogitsRow } from './logits-row.js';

export type { LogitsRow, TopTokens } from './logits-row.js';

export type BackendName = 'onnx' | 'webgpu';

export interface KvCache {
  /** Number of positions whose keys/values are held (== tokens.length). */
  readonly length: number;
  /** The token ids those positions were computed from, in order. */
  readonly tokens: readonly number[];
  /** Keep only the first `n` positions (n <= length). */
  truncate(n: number): void;
  /** A new handle with the same contents; later changes to either do not affect the other. */
  fork(): KvCache;
  /** Bytes of key/value storage this handle references (shared storage counted in full). */
  byteSize(): number;
  /** Release storage; the handle must not be used afterwards. */
  free(): void;
}

export interface ForwardOptions {
  /** Return logits for the last `logitsFor` of the new positions (default 1). */
  logitsFor?: number;
  /** Checked between prefill chunks. */
  signal?: AbortSignal;
}

export interface RowOptions {
  /** Checked between prefill chunks. */
  signal?: AbortSignal;
  /**
   * The unmasked question the caller asks first (row.top(k, null, limit)): answered in the same submission as the
   * forward, so a step without a mask costs one round trip.
   */
  top?: { k: number; limit: number };
}

export interface BackendInfo {
  name: BackendName;
  /** e.g. 'cpu (2 threads)', or the WebGPU adapter's description. */
  device: string;
  /** Weight format actually running: 'f32' | 'f16' | 'q8' | 'q4'. */
  weights: WeightFormat;
  /** Bytes of weights read per decoded token (all matrices once; the embedding row is negligible). */
  weightBytesPerToken: number;
}

export type WeightFormat = 'f32' | 'f16' | 'q8' | 'q4';

export interface Backend {
  readonly config: ModelConfig;
  readonly info: BackendInfo;
  createCache(): KvCache;
  /**
   * Runs `tokens` at positions cache.length.. and appends their keys/values to `cache`.
   * Returns logits for the last `logitsFor` positions, row-major [logitsFor][vocabSize].
   * Long inputs are processed in chunks; the signal is checked between chunks.
   */
  forward(cache: KvCache, tokens: readonly number[], opts?: ForwardOptions): Promise<Float32Array>;
  /**
   * Optional: forward() for the last position's logits only, left where they were computed (a GPU backend's device
   * buffer) and queried through the row (top-k under a token mask there, so a step reads back a few bytes). The row
   * is valid until the next forward or forwardRow on this backend. Without it, callers wrap forward() in hostRow().
   */
  forwardRow?(cache: KvCache, tokens: readonly number[], opts?: RowOptions): Promise<LogitsRow>;
  /**
   * Copies positions [start, end) of a handle out, for engine/cache's blocks: a Float32Array laid out
   * [layer][key, value][kvHead][position][headDim] (KV_LAYOUT), independent of the backend's own storage.
   */
  exportKv(cache: KvCache, start: number, end: number): Float32Array;
  /** A new handle holding `tokens`, its keys/values the concatenation of consecutive exported ranges. */
  importKv(tokens: readonly number[], ranges: readonly Float32Array[]): KvCache;
  dispose(): Promise<void>;
}

/** Floats per position in exported KV ranges: keys and values of every layer and KV head. */
export function kvFloatsPerToken(config: Pick<ModelConfig, 'numLayers' | 'numKvHeads' | 'headDim'>): number {
  return 2 * config.numLayers * config.numKvHeads * config.headDim;
}
