/**
 * KV-cache handles for the ONNX Runtime backend.
 *
 * Keys and values live in JavaScript-owned buffers, one per layer and kind, laid out [kvHeads][capacity][headDim]
 * and fed to the graph as [1, kvHeads, 1, capacity, headDim] tensors (the size-1 axis broadcasts over the query heads
 * sharing a KV head). onnxruntime-node wraps an input's buffer without
 * copying it but copies every output into a fresh ArrayBuffer, so the graph only reads the cache and returns the new
 * positions' rows, which append() writes in place: a decode step moves bytes in proportion to the new tokens, not to
 * the context (returning whole "present" tensors cost ~15 ms a step at 1,900 positions for a 29M model).
 *
 * Capacity follows the length in granules (capacityFor); rows past `length` are stale and the graph masks them. Storage is shared
 * between forks and copied on write: a handle writes in place only while no other handle of the same storage holds
 * positions at or past the ones it writes, so fork() is free and a fork's contents never change under it.
 */
import * as ort from 'onnxruntime-node';
import type { KvCache } from '../backend.js';

export interface KvShape {
  layers: number;
  kvHeads: number;
  headDim: number;
  /** The most positions a handle may hold (the model's RoPE table). */
  maxPositions: number;
}

/** Capacity is a multiple of this many positions. */
const GRANULE = 128;

/** Buffers shared by the handles forked from one another. */
class KvStore {
  readonly keys: Float32Array[];
  readonly values: Float32Array[];
  readonly keyTensors: ort.Tensor[];
  readonly valueTensors: ort.Tensor[];
  readonly holders = new Set<OrtKvCache>();

  constructor(
    readonly shape: KvShape,
    readonly capacity: number,
  ) {
    const { layers, kvHeads: H, headDim: D } = shape;
    const make = () => Array.from({ length: layers }, () => new Float32Array(H * capacity * D));
    this.keys = make();
    this.values = make();
    this.keyTensors = this.keys.map((b) => new ort.Tensor('float32', b, [1, H, 1, capacity, D]));
    this.valueTensors = this.values.map((b) => new ort.Tensor('float32', b, [1, H, 1, capacity, D]));
  }

  /** A store of `capacity` holding positions [0, n) of this one. */
  copy(n: number, capacity: number): KvStore {
    const next = new KvStore(this.shape, capacity);
    for (let l = 0; l < this.shape.layers; l++) {
      copyHeadRows(this.shape, this.keys[l]!, this.capacity, 0, next.keys[l]!, capacity, 0, n);
      copyHeadRows(this.shape, this.values[l]!, this.capacity, 0, next.values[l]!, capacity, 0, n);
    }
    return next;
  }
}

export class OrtKvCache implements KvCache {
  private freed = false;

  private constructor(
    private store: KvStore,
    private toks: number[],
  ) {
    store.holders.add(this);
  }

  static empty(shape: KvShape): OrtKvCache {
    return new OrtKvCache(new KvStore(shape, 0), []);
  }

  get shape(): KvShape {
    return this.store.shape;
  }

  get length(): number {
    return this.toks.length;
  }

  get tokens(): readonly number[] {
    return this.toks;
  }

  /** Positions the graph inputs hold (>= length; the rest is masked). */
  get capacity(): number {
    return this.store.capacity;
  }

  /** Layer `l`'s keys as the graph reads them: [1, kvHeads, 1, capacity, headDim], not a copy. */
  keys(l: number): ort.Tensor {
    this.check();
    return this.store.keyTensors[l]!;
  }

  values(l: number): ort.Tensor {
    this.check();
    return this.store.valueTensors[l]!;
  }

  /**
   * Readies the handle for a forward step: the storage fed to the graph has the capacity capacityFor(length()) gives,
   * and positions from length() on are this handle's alone to write (copying the storage otherwise). Call before
   * feeding keys().
   */
  prepare(): void {
    this.check();
    const n = this.toks.length;
    if (this.othersHoldFrom(n) || this.store.capacity !== capacityFor(n)) this.moveTo(this.store.copy(n, capacityFor(n)));
  }

  /**
   * Appends the rows a forward step computed for `added`: per layer [kvHeads][added.length][headDim] keys and values
   * (the graph's new_key / new_value outputs), growing the storage when they do not fit. prepare() must have come
   * first.
   */
  append(newKeys: readonly Float32Array[], newValues: readonly Float32Array[], added: readonly number[]): void {
    this.check();
    const { layers, kvHeads: H, headDim: D, maxPositions } = this.store.shape;
    const n = this.toks.length;
    const S = added.length;
    if (n + S > maxPositions) throw new RangeError(`kv cache: ${n + S} positions exceed the maximum ${maxPositions}`);
    if (this.othersHoldFrom(n)) throw new Error('kv cache: append() without prepare()');
    if (n + S > this.store.capacity) this.moveTo(this.store.copy(n, capacityFor(n + S)));
    const { shape, capacity } = this.store;
    for (let l = 0; l < layers; l++)
      for (const [src, dst] of [
        [newKeys[l]!, this.store.keys[l]!],
        [newValues[l]!, this.store.values[l]!],
      ] as const) {
        if (src.length !== H * S * D) throw new Error(`kv cache: layer ${l} returned ${src.length / (H * D)} rows for ${S} tokens`);
        copyHeadRows(shape, src, S, 0, dst, capacity, n, S);
      }
    this.toks = this.toks.concat(added);
  }

  /** Positions [0, length) of layer `l` as exact-length [1, kvHeads, length, headDim] copies (for foreign graphs). */
  exactTensors(l: number): [ort.Tensor, ort.Tensor] {
    this.check();
    const { shape, capacity } = this.store;
    const n = this.toks.length;
    const exact = (src: Float32Array) => {
      const out = new Float32Array(shape.kvHeads * n * shape.headDim);
      copyHeadRows(shape, src, capacity, 0, out, n, 0, n);
      return new ort.Tensor('float32', out, [1, shape.kvHeads, n, shape.headDim]);
    };
    return [exact(this.store.keys[l]!), exact(this.store.values[l]!)];
  }

  truncate(n: number): void {
    this.check();
    if (!Number.isInteger(n) || n < 0 || n > this.toks.length) throw new RangeError(`kv cache: cannot truncate ${this.toks.length} tokens to ${n}`);
    this.toks = this.toks.slice(0, n); // rows past n are stale now; the graph never attends to them
  }

  /** Positions [start, end) as [layer][key, value][kvHead][position][headDim] (the Backend.exportKv layout). */
  exportRange(start: number, end: number): Float32Array {
    this.check();
    if (!(Number.isInteger(start) && Number.isInteger(end) && 0 <= start && start <= end && end <= this.toks.length))
      throw new RangeError(`kv cache: cannot export [${start}, ${end}) of ${this.toks.length} positions`);
    const { shape, capacity } = this.store;
    const n = end - start;
    const block = shape.kvHeads * n * shape.headDim; // one layer's keys (or values) for the range
    const out = new Float32Array(2 * shape.layers * block);
    for (let l = 0; l < shape.layers; l++) {
      copyHeadRows(shape, this.store.keys[l]!, capacity, start, out.subarray(2 * l * block, (2 * l + 1) * block), n, 0, n);
      copyHeadRows(shape, this.store.values[l]!, capacity, start, out.subarray((2 * l + 1) * block, (2 * l + 2) * block), n, 0, n);
    }
    return out;
  }

  /** A handle for `tokens` whose keys/values are consecutive exported ranges (exportRange's layout), copied into place. */
  static fromRanges(shape: KvShape, tokens: readonly number[], ranges: readonly Float32Array[]): OrtKvCache {
    const { layers, kvHeads: H, headDim: D } = shape;
    const perToken = 2 * layers * H * D;
    const total = tokens.length;
    const held = ranges.reduce((a, r) => a + r.length, 0);
    if (held !== total * perToken) throw new RangeError(`kv cache: ranges hold ${held / perToken} positions, tokens ${total}`);
    const store = new KvStore(shape, capacityFor(total));
    let at = 0; // position where the current range starts
    for (const r of ranges) {
      const n = r.length / perToken;
      const block = H * n * D;
      for (let l = 0; l < layers; l++) {
        copyHeadRows(shape, r.subarray(2 * l * block, (2 * l + 1) * block), n, 0, store.keys[l]!, store.capacity, at, n);
        copyHeadRows(shape, r.subarray((2 * l + 1) * block, (2 * l + 2) * block), n, 0, store.values[l]!, store.capacity, at, n);
      }
      at += n;
    }
    return new OrtKvCache(store, tokens.slice());
  }

  fork(): OrtKvCache {
    this.check();
    return new OrtKvCache(this.store, this.toks.slice());
  }

  byteSize(): number {
    if (this.freed) return 0;
    const { layers, kvHeads: H, headDim: D } = this.store.shape;
    return 2 * layers * H * this.store.capacity * D * 4;
  }

  free(): void {
    if (this.freed) return;
    this.freed = true;
    this.store.holders.delete(this);
    this.toks = [];
  }

  /** Whether another handle of this storage holds position `n` or later (so this one may not write there). */
  private othersHoldFrom(n: number): boolean {
    for (const h of this.store.holders) if (h !== this && h.length > n) return true;
    return false;
  }

  private moveTo(store: KvStore): void {
    this.store.holders.delete(this);
    this.store = store;
    store.holders.add(this);
  }

  private check(): void {
    if (this.freed) throw new Error('kv cache: used after free()');
  }
}

/**
 * The capacity a handle of `n` cached positions is fed at: a function of the length alone, n rounded up to a granule
 * (0 for an empty cache, so a first prefill attends to its own rows only). The masked rows add exact zeros, but how
 * MLAS groups a sum depends on its length, so the same tokens must always meet the same capacity for a prefix-cache
 * hit to give bit-identical logits to a recomputation. Growing a granule at a time copies the cache once per
 * GRANULE positions: a few bytes per token against the weights each token reads.
 */
export function capacityFor(n: number): number {
  return Math.ceil(n / GRANULE) * GRANULE;
}

/**
 * Rows [srcRow, srcRow + rows) of every head of a [kvHeads][srcCap][headDim] buffer into rows [dstRow, ...) of a
 * [kvHeads][dstCap][headDim] buffer: the one copy every KV layout change here is made of.
 */
export function copyHeadRows(shape: KvShape, src: Float32Array, srcCap: number, srcRow: number, dst: Float32Array, dstCap: number, dstRow: number, rows: number): void {
  const { kvHeads: H, headDim: D } = shape;
  for (let h = 0; h < H; h++) dst.set(src.subarray((h * srcCap + srcRow) * D, (h * srcCap + srcRow + rows) * D), (h * dstCap + dstRow) * D);
}
