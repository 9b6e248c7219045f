/**
 * KV-cache handles for the WebGPU backend.
 *
 * Each layer's keys and values live in one device buffer laid out [2 (key, value)][kvHeads][capacity][headDim], the
 * layout rope.wgsl appends to and attention.wgsl reads. Capacity grows by doubling (a copy per head on the device);
 * truncate only changes the length; fork copies on the device. Every forward step also reads the new positions back
 * into a host mirror in the same layout, so exportKv (synchronous, for the prefix cache) is a memcpy, and a handle
 * outlives its device: after a device loss the mirror moves it to another backend.
 */
import { STORAGE } from '../../../kernels/gpu.js';
import type { KvCache } from '../backend.js';

export interface KvGeometry {
  layers: number;
  kvHeads: number;
  headDim: number;
  /** The most positions a handle may hold. */
  maxPositions: number;
}

const GRANULE = 64;

export class WebGpuKvCache implements KvCache {
  private freed = false;

  constructor(
    private readonly device: GPUDevice,
    readonly geo: KvGeometry,
    public capacity: number,
    /** Per layer: [2][kvH][capacity][hd] on the device, and its host mirror. */
    public buffers: GPUBuffer[],
    public mirror: Float32Array[],
    private toks: number[],
  ) {}

  static create(device: GPUDevice, geo: KvGeometry, capacity = GRANULE): WebGpuKvCache {
    const cap = Math.min(geo.maxPositions, Math.max(GRANULE, Math.ceil(capacity / GRANULE) * GRANULE));
    const floats = 2 * geo.kvHeads * cap * geo.headDim;
    return new WebGpuKvCache(
      device,
      geo,
      cap,
      Array.from({ length: geo.layers }, () => device.createBuffer({ size: floats * 4, usage: STORAGE })),
      Array.from({ length: geo.layers }, () => new Float32Array(floats)),
      [],
    );
  }

  get length(): number {
    return this.toks.length;
  }

  get tokens(): readonly number[] {
    return this.toks;
  }

  /** Room for `n` positions (doubling, copied on the device and in the mirror). */
  reserve(n: number): void {
    this.check();
    if (n <= this.capacity) return;
    if (n > this.geo.maxPositions) throw new RangeError(`kv cache: ${n} positions exceed the maximum ${this.geo.maxPositions}`);
    const cap = Math.min(this.geo.maxPositions, Math.max(Math.ceil(n / GRANULE) * GRANULE, 2 * this.capacity));
    const { kvHeads, headDim: hd } = this.geo;
    const enc = this.device.createCommandEncoder();
    const len = this.toks.length;
    const buffers = this.buffers.map((old, l) => {
      const buf = this.device.createBuffer({ size: 2 * kvHeads * cap * hd * 4, usage: STORAGE });
      const m = new Float32Array(2 * kvHeads * cap * hd);
      for (let s = 0; s < 2 * kvHeads; s++) {
        if (len) enc.copyBufferToBuffer(old, s * this.capacity * hd * 4, buf, s * cap * hd * 4, len * hd * 4);
        m.set(this.mirror[l]!.subarray(s * this.capacity * hd, (s * this.capacity + len) * hd), s * cap * hd);
      }
      this.mirror[l] = m;
      return buf;
    });
    this.device.queue.submit([enc.finish()]);
    for (const b of this.buffers) b.destroy();
    this.buffers = buffers;
    this.capacity = cap;
  }

  /** Records positions appended by a forward step (their keys/values are already on the device and in the mirror). */
  appended(tokens: readonly number[]): void {
    this.toks = this.toks.concat(tokens);
  }

  truncate(n: number): void {
    this.check();
    if (!Number.isInteger(n) || n < 0 || n > this.toks.length) throw new RangeError(`kv cache: cannot truncate ${this.toks.length} tokens to ${n}`);
    this.toks = this.toks.slice(0, n);
  }

  fork(): WebGpuKvCache {
    this.check();
    const copy = WebGpuKvCache.create(this.device, this.geo, this.capacity);
    const enc = this.device.createCommandEncoder();
    this.buffers.forEach((b, l) => enc.copyBufferToBuffer(b, 0, copy.buffers[l]!, 0, b.size));
    this.device.queue.submit([enc.finish()]);
    copy.mirror = this.mirror.map((m) => m.slice());
    copy.toks = this.toks.slice();
    return copy;
  }

  /** Positions [start, end) as [layer][key, value][kvHead][position][headDim] (the Backend.exportKv layout). */
  exportRange(start: number, end: number): Float32Array {
    this.check();
    if (!(Number.isInteger(start) && Number.isInteger(end) && 0 <= start && start <= end && end <= this.toks.length))
      throw new RangeError(`kv cache: cannot export [${start}, ${end}) of ${this.toks.length} positions`);
    const { layers, kvHeads, headDim: hd } = this.geo;
    const n = end - start;
    const out = new Float32Array(2 * layers * kvHeads * n * hd);
    let o = 0;
    for (let l = 0; l < layers; l++)
      for (let s = 0; s < 2 * kvHeads; s++, o += n * hd) out.set(this.mirror[l]!.subarray((s * this.capacity + start) * hd, (s * this.capacity + end) * hd), o);
    return out;
  }

  /** A handle for `tokens` whose keys/values are consecutive exported ranges, uploaded to the device. */
  static fromRanges(device: GPUDevice, geo: KvGeometry, tokens: readonly number[], ranges: readonly Float32Array[]): WebGpuKvCache {
    const { layers, kvHeads, headDim: hd } = geo;
    const perToken = 2 * layers * kvHeads * hd;
    const total = tokens.length;
    const have = ranges.reduce((a, r) => a + r.length, 0);
    if (have !== total * perToken) throw new RangeError(`kv cache: ranges hold ${have / perToken} positions, tokens ${total}`);
    const c = WebGpuKvCache.create(device, geo, total);
    for (let l = 0; l < layers; l++) {
      const m = c.mirror[l]!;
      let at = 0;
      for (const r of ranges) {
        const n = r.length / perToken;
        for (let s = 0; s < 2 * kvHeads; s++) {
          const from = (l * 2 * kvHeads + s) * n * hd;
          m.set(r.subarray(from, from + n * hd), (s * c.capacity + at) * hd);
        }
        at += n;
      }
      device.queue.writeBuffer(c.buffers[l]!, 0, m);
    }
    c.toks = tokens.slice();
    return c;
  }

  byteSize(): number {
    if (this.freed) return 0;
    return 2 * this.geo.layers * this.geo.kvHeads * this.toks.length * this.geo.headDim * 4;
  }

  free(): void {
    if (this.freed) return;
    this.freed = true;
    for (const b of this.buffers) b.destroy();
    this.buffers = [];
    this.mirror = [];
    this.toks = [];
  }

  private check(): void {
    if (this.freed) throw new Error('kv cache: used after free()');
  }
}
