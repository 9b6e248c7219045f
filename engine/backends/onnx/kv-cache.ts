/**
 * KV-cache handles for the ONNX Runtime backend.
 *
 * Each layer's keys and values are one tensor [1, kvHeads, length, headDim] (the BNSH layout GroupQueryAttention and
 * Optimum exports both use). Tensors are never written after creation: a forward step returns new "present" tensors
 * and the handle swaps them in. That makes fork() free (two handles share the same immutable tensors) and keeps a
 * fork's contents stable whatever happens to its parent.
 */
import * as ort from 'onnxruntime-node';
import type { KvCache } from '../backend.js';

export interface KvShape {
  layers: number;
  kvHeads: number;
  headDim: number;
}

export class OrtKvCache implements KvCache {
  private freed = false;

  private constructor(
    readonly shape: KvShape,
    private keys: ort.Tensor[],
    private values: ort.Tensor[],
    private toks: number[],
  ) {}

  static empty(shape: KvShape): OrtKvCache {
    const empty = () => new ort.Tensor('float32', new Float32Array(0), [1, shape.kvHeads, 0, shape.headDim]);
    return new OrtKvCache(
      shape,
      Array.from({ length: shape.layers }, empty),
      Array.from({ length: shape.layers }, empty),
      [],
    );
  }

  get length(): number {
    return this.toks.length;
  }

  get tokens(): readonly number[] {
    return this.toks;
  }

  key(layer: number): ort.Tensor {
    this.check();
    return this.keys[layer]!;
  }

  value(layer: number): ort.Tensor {
    this.check();
    return this.values[layer]!;
  }

  /** Replaces the contents after a forward step that appended `added` tokens. */
  update(keys: ort.Tensor[], values: ort.Tensor[], added: readonly number[]): void {
    this.check();
    const expected = this.toks.length + added.length;
    if (keys[0]?.dims[2] !== expected) throw new Error(`kv cache: present length ${keys[0]?.dims[2]} != ${expected}`);
    this.keys = keys;
    this.values = values;
    this.toks = this.toks.concat(added);
  }

  truncate(n: number): void {
    this.check();
    if (!Number.isInteger(n) || n < 0 || n > this.toks.length) throw new RangeError(`kv cache: cannot truncate ${this.toks.length} tokens to ${n}`);
    if (n === this.toks.length) return;
    this.keys = this.keys.map((t) => sliceSequence(t, n));
    this.values = this.values.map((t) => sliceSequence(t, n));
    this.toks = this.toks.slice(0, n);
  }

  fork(): OrtKvCache {
    this.check();
    return new OrtKvCache(this.shape, this.keys.slice(), this.values.slice(), this.toks.slice());
  }

  byteSize(): number {
    if (this.freed) return 0;
    return 2 * this.shape.layers * this.shape.kvHeads * this.toks.length * this.shape.headDim * 4;
  }

  free(): void {
    this.freed = true;
    this.keys = [];
    this.values = [];
    this.toks = [];
  }

  private check(): void {
    if (this.freed) throw new Error('kv cache: used after free()');
  }
}

/** The first `n` positions of a [1, heads, len, dim] tensor (a copy: each head's rows are contiguous). */
function sliceSequence(t: ort.Tensor, n: number): ort.Tensor {
  const [, heads, len, dim] = t.dims as [number, number, number, number];
  const src = t.data as Float32Array;
  const out = new Float32Array(heads * n * dim);
  for (let h = 0; h < heads; h++) out.set(src.subarray(h * len * dim, h * len * dim + n * dim), h * n * dim);
  return new ort.Tensor('float32', out, [1, heads, n, dim]);
}
