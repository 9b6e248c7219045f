/**
 * A WebGPU backend that keeps answering when its device goes away: forwards go to WebGPU until the device is lost,
 * then to a CPU backend loaded on first need. Handles are wrappers whose inner handle moves across on first use after
 * the switch, through the WebGPU handle's host mirror (exportKv needs no device) and the CPU backend's importKv, so the
 * engine's resident sequence and prefix cache survive the loss. A logits row left on the device when it went is
 * computed again on the CPU from the handle's last token.
 */
import { oneLine } from '../../errors.js';
import type { Backend, BackendInfo, ForwardOptions, KvCache, RowOptions } from '../backend.js';
import { forwardRowOf, hostRow, type LogitsRow } from '../logits-row.js';
import { WebGpuKvCache } from './kv-cache.js';
import type { WebGpuBackend } from './webgpu-backend.js';

class SwitchingKvCache implements KvCache {
  constructor(public inner: KvCache) {}
  get length(): number {
    return this.inner.length;
  }
  get tokens(): readonly number[] {
    return this.inner.tokens;
  }
  truncate(n: number): void {
    this.inner.truncate(n);
  }
  fork(): SwitchingKvCache {
    return new SwitchingKvCache(this.inner.fork());
  }
  byteSize(): number {
    return this.inner.byteSize();
  }
  free(): void {
    this.inner.free();
  }
}

export class FallbackBackend implements Backend {
  private fallback: Backend | null = null;
  private loading: Promise<Backend> | null = null;

  constructor(
    readonly primary: WebGpuBackend,
    private readonly loadFallback: () => Promise<Backend>,
    private readonly warn: (message: string) => void,
  ) {}

  get config() {
    return this.primary.config;
  }

  get info(): BackendInfo {
    return this.fallback?.info ?? this.primary.info;
  }

  /** True once forwards run on the CPU backend. */
  get degraded(): boolean {
    return this.fallback !== null;
  }

  createCache(): KvCache {
    return new SwitchingKvCache(this.fallback ? this.fallback.createCache() : this.primary.createCache());
  }

  async forward(cache: KvCache, tokens: readonly number[], opts?: ForwardOptions): Promise<Float32Array> {
    const c = unwrap(cache);
    return this.run(c, (gpu) => gpu.forward(c.inner, tokens, opts), (cpu) => cpu.forward(c.inner, tokens, opts));
  }

  async forwardRow(cache: KvCache, tokens: readonly number[], opts?: RowOptions): Promise<LogitsRow> {
    const c = unwrap(cache);
    const row = await this.run(c, (gpu) => gpu.forwardRow(c.inner, tokens, opts), (cpu) => forwardRowOf(cpu, c.inner, tokens, opts));
    if (this.fallback) return row;
    // the row lives on the device: if it goes before the row is answered, recompute the last position on the CPU
    const again = async (): Promise<LogitsRow> => {
      const cpu = await this.switchOver();
      this.migrate(c, cpu);
      const last = c.inner.tokens[c.inner.length - 1]!;
      c.inner.truncate(c.inner.length - 1);
      return hostRow(await cpu.forward(c.inner, [last]));
    };
    const lost = (e: unknown) => {
      if (this.primary.lostReason === null) throw e;
    };
    return {
      vocabSize: row.vocabSize,
      top: (k, allowed, limit) => row.top(k, allowed, limit).catch(async (e) => (lost(e), (await again()).top(k, allowed, limit))),
      read: () => row.read().catch(async (e) => (lost(e), (await again()).read())),
    };
  }

  /** On the GPU until its device is lost (the failing call is retried on the CPU), then on the CPU. */
  private async run<T>(c: SwitchingKvCache, onGpu: (gpu: WebGpuBackend) => Promise<T>, onCpu: (cpu: Backend) => Promise<T>): Promise<T> {
    if (!this.fallback && this.primary.lostReason === null) {
      try {
        return await onGpu(this.primary);
      } catch (e) {
        if (this.primary.lostReason === null) throw e;
      }
    }
    const cpu = await this.switchOver();
    this.migrate(c, cpu);
    return onCpu(cpu);
  }

  exportKv(cache: KvCache, start: number, end: number): Float32Array {
    const c = unwrap(cache);
    return (this.owns(c.inner) ? this.primary : this.fallback!).exportKv(c.inner, start, end);
  }

  importKv(tokens: readonly number[], ranges: readonly Float32Array[]): KvCache {
    return new SwitchingKvCache(this.fallback ? this.fallback.importKv(tokens, ranges) : this.primary.importKv(tokens, ranges));
  }

  async dispose(): Promise<void> {
    await this.primary.dispose();
    const fb = this.fallback ?? (this.loading ? await this.loading.catch(() => null) : null);
    await fb?.dispose();
  }

  private owns(inner: KvCache): boolean {
    return inner instanceof WebGpuKvCache;
  }

  private async switchOver(): Promise<Backend> {
    if (this.fallback) return this.fallback;
    this.loading ??= (async () => {
      this.warn(`${oneLine(this.primary.lostReason ?? 'WebGPU failed')}; continuing on the CPU backend (onnx)`);
      return this.loadFallback();
    })();
    this.fallback = await this.loading;
    return this.fallback;
  }

  /** Moves a handle still on the lost device to the CPU backend, through its host mirror. */
  private migrate(c: SwitchingKvCache, cpu: Backend): void {
    if (!(c.inner instanceof WebGpuKvCache)) return;
    const old = c.inner;
    c.inner = old.length ? cpu.importKv(old.tokens, [this.primary.exportKv(old, 0, old.length)]) : cpu.createCache();
    old.free();
  }
}

function unwrap(cache: KvCache): SwitchingKvCache {
  if (!(cache instanceof SwitchingKvCache)) throw new TypeError('webgpu backend: foreign KV cache handle');
  return cache;
}
