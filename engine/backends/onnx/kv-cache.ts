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

  /** Positions [start, end) as [layer][key, value][kvHead][position][headDim] (the Backend.exportKv layout). */
  exportRange(start: number, end: number): Float32Array {
    this.check();
    if (!(Number.isInteger(start) && Number.isInteger(end) && 0 <= start && start <= end && end <= this.toks.length))
      throw new RangeError(`kv cache: cannot export [${start}, ${end}) of ${this.toks.length} positions`);
    const { layers, kvHeads: H, headDim: D } = this.shape;
    const n = end - start;
    const len = this.toks.length;
    const out = new Float32Array(2 * layers * H * n * D);
    let o = 0;
    for (let l = 0; l < layers; l++) {
      for (const t of [this.keys[l]!, this.values[l]!]) {
        const src = t.data as Float32Array;
        for (let h = 0; h < H; h++, o += n * D) out.set(src.subarray((h * len + start) * D, (h * len + end) * D), o);
      }
    }
    return out;
  }

  /** A handle for `tokens` whose keys/values are consecutive exported ranges (exportRange's layout), copied into place. */
  static fromRanges(shape: KvShape, tokens: readonly number[], ranges: readonly Float32Array[]): OrtKvCache {
    const { layers, kvHeads: H, headDim: D } = shape;
    const perToken = 2 * layers * H * D;
    const total = tokens.length;
    if (ranges.reduce((a, r) => a + r.length, 0) !== total * perToken) throw new RangeError(`kv cache: ranges hold ${ranges.reduce((a, r) => a + r.length, 0) / perToken} positions, tokens ${total}`);
    const keys: ort.Tensor[] = [];
    const values: ort.Tensor[] = [];
    for (let l = 0; l < layers; l++) {
      for (let kv = 0; kv < 2; kv++) {
        const dst = new Float32Array(H * total * D);
        let at = 0; // position where the current range starts
        for (const r of ranges) {
          const n = r.length / perToken;
          for (let h = 0; h < H; h++) {
            const from = ((l * 2 + kv) * H + h) * n * D;
            dst.set(r.subarray(from, from + n * D), (h * total + at) * D);
          }
          at += n;
        }
        (kv === 0 ? keys : values).push(new ort.Tensor('float32', dst, [1, H, total, D]));
      }
    }
    return new OrtKvCache(shape, keys, values, tokens.slice());
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
