/**
 * What every kernel dispatcher shares: a device (Dawn through the `webgpu` package), WGSL sources read beside this
 * module with a tiny `#if NAME` preprocessor for variants, a pipeline cache keyed by (kernel, variant), and buffer
 * helpers. Kernels know tensors, not models.
 */
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';

export interface GpuContext {
  device: GPUDevice;
  adapterInfo: GPUAdapterInfo;
  /** e.g. 'webgpu: llvmpipe (opengles)'. */
  description: string;
  /** llvmpipe, SwiftShader, lavapipe, WARP... where the CPU backend is faster. */
  software: boolean;
  /** Resolves with the reason once the device is lost (destroyed or a driver failure). */
  lost: Promise<string>;
  pipelines: Map<string, GPUComputePipeline>;
  /** Dawn's instance: it must outlive the device (collected, it takes the device down with it). */
  instance: GPU;
  /** Optional features granted with the device, which kernels turn into defines (see GpuFeatures). */
  features: GpuFeatures;
}

/**
 * What the device was granted beyond core WebGPU. Kernels pick variants from this and always keep a core fallback:
 * Mesa llvmpipe through OpenGL ES (CI, machines without a GPU) offers neither, so the fallbacks are what CI tests.
 */
export interface GpuFeatures {
  /** `shader-f16`: f16 arithmetic and types in WGSL (`enable f16;`). Not needed to read f16 data (unpack2x16float). */
  shaderF16: boolean;
  /** `subgroups`: subgroupAdd / subgroupShuffleXor (`enable subgroups;`), with subgroupMinSize lanes at least. */
  subgroups: boolean;
  /** The adapter's smallest subgroup size (0 when unknown or without subgroups). */
  subgroupMinSize: number;
}

export const NO_FEATURES: GpuFeatures = { shaderF16: false, subgroups: false, subgroupMinSize: 0 };

const SOFTWARE = /llvmpipe|lavapipe|softpipe|swiftshader|software|basic render|warp/i;

export interface OpenGpuOptions {
  /** Dawn backends to try in order: 'default' is the platform's native API (Vulkan, Metal, D3D12). */
  backends?: Array<'default' | 'opengles'>;
  /** Accept a software adapter (llvmpipe...). Default true. */
  allowSoftware?: boolean;
  /** Request shader-f16 / subgroups when offered (default true; MGD_WEBGPU_FEATURES=none turns them off, to compare
   * or to rule them out). */
  features?: boolean;
}

/** Loads Dawn and requests a device with the adapter's largest buffer limits. Null when no adapter qualifies. */
export async function openGpu(opts: OpenGpuOptions = {}): Promise<GpuContext | null> {
  // Mesa's EGL needs a platform to run without a display.
  process.env.EGL_PLATFORM ??= 'surfaceless';
  const { create, globals } = await import('webgpu');
  Object.assign(globalThis, globals);
  for (const backend of opts.backends ?? (nativeGpuApiPresent() ? ['default', 'opengles'] : ['opengles'])) {
    let adapter: GPUAdapter | null = null;
    let gpu: GPU | null = null;
    try {
      gpu = create([...(backend === 'opengles' ? ['backend=opengles'] : []), ...dawnToggles(backend === 'default' ? ['vulkan_enable_f16_on_nvidia'] : [])]);
      adapter = await gpu.requestAdapter(backend === 'opengles' ? ({ featureLevel: 'compatibility' } as GPURequestAdapterOptions) : { powerPreference: 'high-performance' });
    } catch {
      adapter = null;
    }
    if (!adapter || !gpu) continue;
    const info = adapter.info;
    const name = [info.vendor, info.architecture, info.device, info.description].filter((s) => s).join(' ') || 'unknown adapter';
    const software = SOFTWARE.test(name) || (info as { isFallbackAdapter?: boolean }).isFallbackAdapter === true;
    if (software && opts.allowSoftware === false) continue;
    const l = adapter.limits;
    const wanted = opts.features ?? process.env.MGD_WEBGPU_FEATURES !== 'none';
    const requiredFeatures = wanted ? (['shader-f16', 'subgroups'] as const).filter((f) => adapter.features.has(f)) : [];
    const device = await adapter.requestDevice({
      requiredFeatures: requiredFeatures as unknown as GPUFeatureName[],
      requiredLimits: {
        maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
        maxBufferSize: l.maxBufferSize,
        maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
        maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
        maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
        maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
      },
    });
    const lost = device.lost.then((i) => `${i.reason}: ${i.message}`);
    // Dawn prints an uncaught validation error to stdout, which is the LSP stream of `mgd serve --stdio` (and the
    // JSON of `--json`): take it, and say it in one line on stderr instead.
    device.addEventListener('uncapturederror', (e) => {
      e.preventDefault();
      const message = (e as GPUUncapturedErrorEvent).error?.message ?? 'unknown error';
      process.stderr.write(`mgd: webgpu: ${message.split('\n')[0]}\n`);
    });
    const features = await grantedFeatures(device, info);
    return { device, adapterInfo: info, description: `webgpu: ${name} (${backend})`, software, lost, pipelines: new Map(), instance: gpu, features };
  }
  return null;
}

/**
 * Dawn toggles: `always` (on the native backend: `vulkan_enable_f16_on_nvidia`, as Dawn hides shader-f16 on NVIDIA's
 * Vulkan driver unless asked; other adapters ignore it) and those in MGD_DAWN_TOGGLES (comma-separated, e.g.
 * `disable_workgroup_init,disable_robustness`), for measuring what Dawn's safety work costs a kernel on a real GPU:
 * workgroup memory is zeroed before every workgroup and every array index clamped unless turned off. Our kernels
 * write workgroup memory before reading it and stay in bounds (the tests check their results), but these stay opt-in:
 * off, a kernel bug reads garbage instead of a clamped element.
 */
function dawnToggles(always: string[]): string[] {
  const t = process.env.MGD_DAWN_TOGGLES?.trim();
  if (t && !/^[a-z0-9_]+(,[a-z0-9_]+)*$/.test(t)) throw new Error(`MGD_DAWN_TOGGLES: expected comma-separated toggle names, got "${t}"`);
  const all = [...always, ...(t ? t.split(',') : [])];
  return all.length ? [`enable-dawn-features=${all.join(',')}`] : [];
}

/**
 * The features the device has and whose shaders compile: each is probed with a one-line use inside an error scope, so
 * a driver that advertises a feature it cannot compile falls back to the core kernels instead of failing at the first
 * dispatch.
 */
async function grantedFeatures(device: GPUDevice, info: GPUAdapterInfo): Promise<GpuFeatures> {
  const compiles = async (code: string) => {
    device.pushErrorScope('validation');
    const module = device.createShaderModule({ code });
    device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
    return (await device.popErrorScope()) === null;
  };
  const probe = '@group(0) @binding(0) var<storage, read_write> o: array<f32>;\n@compute @workgroup_size(32) fn main(@builtin(local_invocation_index) i: u32) {';
  const shaderF16 = device.features.has('shader-f16') && (await compiles(`enable f16;\n${probe} o[i] = f32(f16(o[i]) * 2.0h); }`));
  const subgroups = device.features.has('subgroups') && (await compiles(`enable subgroups;\n${probe} o[i] = subgroupAdd(o[i]) + subgroupShuffleXor(o[i], 1u); }`));
  const minSize = (info as { subgroupMinSize?: number }).subgroupMinSize ?? 0;
  return { shaderF16, subgroups: subgroups && minSize >= 4, subgroupMinSize: subgroups ? minSize : 0 };
}

/**
 * Whether Dawn's native backend can exist here: on Linux it needs the Vulkan loader (without it Dawn only prints a
 * warning on stderr). Metal and D3D12 are always present on their platforms.
 */
export function nativeGpuApiPresent(): boolean {
  if (process.platform !== 'linux') return true;
  const dirs = [...(process.env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean), '/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib', '/usr/local/lib'];
  return dirs.some((d) => fs.existsSync(`${d}/libvulkan.so.1`));
}

// ---- WGSL sources

const sources = new Map<string, string>();

/** A kernel's WGSL text, read beside this module (dist/kernels after the build copies it, else the source tree). */
export function wgslSource(name: string): string {
  let s = sources.get(name);
  if (s === undefined) {
    const candidates = [new URL(`./${name}.wgsl`, import.meta.url), new URL(`../../kernels/${name}.wgsl`, import.meta.url)];
    const file = candidates.map((u) => fileURLToPath(u)).find((f) => fs.existsSync(f));
    if (!file) throw new Error(`kernel source ${name}.wgsl not found beside ${fileURLToPath(import.meta.url)}`);
    s = fs.readFileSync(file, 'utf8');
    sources.set(name, s);
  }
  return s;
}

/**
 * A kernel's source with each `#include NAME` line replaced by kernels/NAME.wgsl (once per shader): WGSL has no
 * include, and the structs several kernels read from one host-side packing (Params of the products and of attention,
 * the per-step Step) are declared once that way.
 */
export function withIncludes(src: string, seen = new Set<string>()): string {
  return src.replace(/^#include\s+([\w-]+)\s*$/gm, (_, name: string) => {
    if (seen.has(name)) return '';
    seen.add(name);
    return withIncludes(wgslSource(name), seen);
  });
}

/**
 * Variant selection: lines between `#if NAME` and `#else`/`#endif` are kept when NAME is defined (`#if !NAME` negates);
 * `{{NAME}}` is replaced by the define's value. No nesting of the same line; nesting of blocks is supported.
 */
export function preprocess(src: string, defines: Record<string, string | number | boolean>): string {
  const out: string[] = [];
  const stack: Array<{ active: boolean; taken: boolean }> = [];
  const on = () => stack.every((s) => s.active);
  for (const line of src.split('\n')) {
    const t = line.trim();
    const m = /^#if\s+(!?)(\w+)$/.exec(t);
    if (m) {
      const v = defines[m[2]!];
      const truthy = v !== undefined && v !== false && v !== 0;
      const active = m[1] ? !truthy : truthy;
      stack.push({ active, taken: active });
    } else if (t === '#else') {
      const top = stack[stack.length - 1];
      if (!top) throw new Error('wgsl: #else without #if');
      top.active = !top.taken;
    } else if (t === '#endif') {
      if (!stack.pop()) throw new Error('wgsl: #endif without #if');
    } else if (on()) {
      out.push(line.replace(/\{\{(\w+)\}\}/g, (_, k: string) => {
        if (!(k in defines)) throw new Error(`wgsl: undefined {{${k}}}`);
        return String(defines[k]);
      }));
    }
  }
  if (stack.length) throw new Error('wgsl: unterminated #if');
  return out.join('\n');
}

/** The compute pipeline for (kernel, entry point, defines), compiled once per device. */
export function pipeline(ctx: GpuContext, kernel: string, entry: string, defines: Record<string, string | number | boolean>): GPUComputePipeline {
  const key = `${kernel}:${entry}:${Object.entries(defines).sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => `${k}=${v}`).join(',')}`;
  let p = ctx.pipelines.get(key);
  if (!p) {
    const code = preprocess(withIncludes(wgslSource(kernel)), defines);
    const module = ctx.device.createShaderModule({ code, label: key });
    p = ctx.device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: entry }, label: key });
    ctx.pipelines.set(key, p);
  }
  return p;
}

// ---- buffers

export const STORAGE = 0x80 | 0x08 | 0x04; // STORAGE | COPY_DST | COPY_SRC (GPUBufferUsage, without the global)

/** A storage buffer holding `data` (padded to 4 bytes; at least 16). */
export function upload(device: GPUDevice, data: ArrayBufferView, label?: string): GPUBuffer {
  const size = Math.max(16, Math.ceil(data.byteLength / 4) * 4);
  const buf = device.createBuffer({ size, usage: STORAGE, mappedAtCreation: true, label });
  new Uint8Array(buf.getMappedRange()).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  buf.unmap();
  return buf;
}

export function storage(device: GPUDevice, bytes: number, label?: string): GPUBuffer {
  return device.createBuffer({ size: Math.max(16, Math.ceil(bytes / 16) * 16), usage: STORAGE, label });
}

export type ParamFields = Array<number | { f: number }>;

/** Params fields as u32/f32 in WGSL order (each 4 bytes; f32 fields given as {f: x}), padded to 16 bytes. */
export function packParams(fields: ParamFields): ArrayBuffer {
  const n = Math.max(4, Math.ceil(fields.length / 4) * 4);
  const raw = new ArrayBuffer(n * 4);
  const u = new Uint32Array(raw);
  const f = new Float32Array(raw);
  fields.forEach((v, i) => {
    if (typeof v === 'number') {
      if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`params: field ${i} = ${v} is not a u32`);
      u[i] = v;
    } else f[i] = v.f;
  });
  return raw;
}

export const UNIFORM = 0x40 | 0x08; // UNIFORM | COPY_DST

/** A uniform buffer with the params, fields as u32/f32 in WGSL order (each 4 bytes; f32 fields given as {f: x}). */
export function params(device: GPUDevice, fields: ParamFields): GPUBuffer {
  const raw = packParams(fields);
  const buf = device.createBuffer({ size: raw.byteLength, usage: UNIFORM, mappedAtCreation: true });
  new Uint8Array(buf.getMappedRange()).set(new Uint8Array(raw));
  buf.unmap();
  return buf;
}

/**
 * Uniform buffers made once and shared by every dispatch with the same fields: what lets a recorded dispatch list be
 * reused across steps (the values that change per step live in a separate buffer written with queue.writeBuffer).
 * Never destroyed while the device lives; bounded by forgetting (not destroying) all entries past `limit`.
 */
export class UniformPool {
  private readonly buffers = new Map<string, GPUBuffer>();
  constructor(
    private readonly device: GPUDevice,
    private readonly limit = 4096,
  ) {}

  get(fields: ParamFields): GPUBuffer {
    const key = fields.map((v) => (typeof v === 'number' ? v : `f${v.f}`)).join(',');
    let b = this.buffers.get(key);
    if (!b) {
      if (this.buffers.size >= this.limit) this.buffers.clear(); // bind groups still holding them keep them alive
      b = params(this.device, fields);
      this.buffers.set(key, b);
    }
    return b;
  }
}

/** A dispatcher's uniform buffer: from the pool when there is one, else fresh and listed as transient. */
export function uniform(device: GPUDevice, pool: UniformPool | undefined, fields: ParamFields, transient: GPUBuffer[]): GPUBuffer {
  if (pool) return pool.get(fields);
  const b = params(device, fields);
  transient.push(b);
  return b;
}

/**
 * The per-step uniform of the kernels that depend on the position (rope, attention): `struct Step { pos0: u32, ... }`.
 * A plan binds one buffer and writes it before each submit (stepValues); one-off dispatches get a fresh one.
 */
export function stepValues(pos0: number): Uint32Array {
  return Uint32Array.of(pos0, 0, 0, 0);
}

/** Buffers by binding number (null: the variant has no such binding). */
export function bindGroup(device: GPUDevice, p: GPUComputePipeline, buffers: Array<GPUBuffer | null>): GPUBindGroup {
  const entries: GPUBindGroupEntry[] = [];
  buffers.forEach((buffer, binding) => {
    if (buffer) entries.push({ binding, resource: { buffer } });
  });
  return device.createBindGroup({ layout: p.getBindGroupLayout(0), entries });
}

/** One recorded dispatch: a pipeline, its bindings (params first) and the workgroup grid. */
export interface Dispatch {
  pipeline: GPUComputePipeline;
  bindGroup: GPUBindGroup;
  grid: [number, number, number];
  /** Uniform buffers made for this dispatch, destroyed after submission. */
  transient: GPUBuffer[];
}

export function encode(pass: GPUComputePassEncoder, d: Dispatch): void {
  pass.setPipeline(d.pipeline);
  pass.setBindGroup(0, d.bindGroup);
  pass.dispatchWorkgroups(...d.grid);
}

/** Runs dispatches in one command buffer (one compute pass) and releases their transient buffers. */
export function submit(device: GPUDevice, dispatches: Dispatch[], after?: (enc: GPUCommandEncoder) => void): void {
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  for (const d of dispatches) encode(pass, d);
  pass.end();
  after?.(enc);
  device.queue.submit([enc.finish()]);
  for (const d of dispatches) for (const b of d.transient) b.destroy();
}

/** Copies `bytes` of a buffer back to the host. */
export async function readBack(device: GPUDevice, src: GPUBuffer, offset: number, bytes: number): Promise<ArrayBuffer> {
  const staging = device.createBuffer({ size: Math.ceil(bytes / 4) * 4, usage: 0x01 | 0x08 /* MAP_READ | COPY_DST */ });
  const enc = device.createCommandEncoder();
  enc.copyBufferToBuffer(src, offset, staging, 0, Math.ceil(bytes / 4) * 4);
  device.queue.submit([enc.finish()]);
  await staging.mapAsync(1 /* GPUMapMode.READ */);
  const out = staging.getMappedRange().slice(0, bytes);
  staging.unmap();
  staging.destroy();
  return out;
}

/** Workgroups along x for n items, spread over y when n exceeds the per-dimension limit (65535). */
export function grid1d(groups: number): [number, number] {
  if (groups <= 65535) return [Math.max(1, groups), 1];
  const y = Math.ceil(groups / 65535);
  return [Math.ceil(groups / y), y];
}

/**
 * MAP_READ staging buffers kept for reuse (a readback per step need not create and destroy one): one per readback in
 * flight, replaced by a larger one (a power of two) when a readback needs more.
 */
export class StagingPool {
  private readonly free: GPUBuffer[] = [];
  constructor(
    private readonly device: GPUDevice,
    private readonly keep = 2,
  ) {}

  /** A buffer of at least `bytes`, unmapped, for the caller alone until release() (or destroy() after a failure). */
  acquire(bytes: number): GPUBuffer {
    const need = Math.max(16, Math.ceil(bytes / 4) * 4);
    const at = this.free.findIndex((b) => b.size >= need);
    if (at >= 0) return this.free.splice(at, 1)[0]!;
    return this.device.createBuffer({ size: Math.max(need, 2 ** Math.ceil(Math.log2(need))), usage: 0x01 | 0x08 /* MAP_READ | COPY_DST */ });
  }

  /** Back to the pool, unmapped; the smallest goes when more than `keep` wait. */
  release(b: GPUBuffer): void {
    this.free.push(b);
    if (this.free.length > this.keep) {
      this.free.sort((x, y) => x.size - y.size);
      this.free.shift()!.destroy();
    }
  }
}
