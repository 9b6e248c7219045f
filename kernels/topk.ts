/**
 * Dispatcher for topk.wgsl: the k best (logit, id) pairs of a row, best first, ties to the lower id, among the tokens
 * an optional bitset allows, so a decode step reads back k pairs instead of the vocabulary's logits. One dispatch
 * per pass; each pass cuts the candidates by CHUNK / run (at least 4x), the last runs one workgroup into `out`.
 * A logit of -Infinity on an allowed token is a candidate like any other (ranked last); NaN is not handled.
 */
import { bindGroup, grid1d, pipeline, uniform, type Dispatch, type GpuContext, type UniformPool } from './gpu.js';

export const MAX_TOP_K = 256;
/** Values per workgroup (topk.wgsl CH). */
const CHUNK = 1024;
/** The id of a filler pair (topk.wgsl NONE): fewer than k tokens allowed. */
const NONE = 0xffffffff;

export interface TopKArgs {
  /** The row: N floats at float offset `offset` of x. */
  x: GPUBuffer;
  offset: number;
  N: number;
  /** 1..MAX_TOP_K */
  k: number;
  /** Optional allowed-token bitset: u32 words, bit (i & 31) of word (i >> 5) set = token i allowed. Null: all allowed. */
  mask?: GPUBuffer | null;
  /** At least topKScratchBytes(N, k) bytes (candidate pairs between passes). */
  scratch: GPUBuffer;
  /** Receives k pairs (f32 logit, u32 id) at byte offset outOffset (default 0), best first. Not x. */
  out: GPUBuffer;
  outOffset?: number;
  uniforms?: UniformPool;
}

/** k rounded up to a power of two: the sorted run a workgroup hands to the next pass (divides CHUNK). */
function runLength(k: number): number {
  return 2 ** Math.ceil(Math.log2(k));
}

/** Workgroups of each pass: the first over the row, each later one over the previous pass's runs, down to one. */
function passGroups(N: number, k: number): number[] {
  const run = runLength(k);
  const groups = [Math.ceil(N / CHUNK)];
  while (groups[groups.length - 1]! > 1) groups.push(Math.ceil((groups[groups.length - 1]! * run) / CHUNK));
  return groups;
}

/** Pairs each half of scratch holds: the passes that do not write `out` alternate halves 0, 1, 0, ... */
function halves(N: number, k: number): [number, number] {
  const run = runLength(k);
  const g = passGroups(N, k);
  // the passes shrink, so each half's first writer is its largest
  return [g.length > 1 ? g[0]! * run : 0, g.length > 2 ? g[1]! * run : 0];
}

export function topKScratchBytes(N: number, k: number): number {
  const [a, b] = halves(N, k);
  return Math.max(16, (a + b) * 8);
}

/** Dispatches topK makes for (N, k), one per pass: 2 for Qwen2's vocabulary (151,936) at k = 1, 3 at k = 64. */
export function topKPasses(N: number, k: number): number {
  return passGroups(N, k).length;
}

export function topK(ctx: GpuContext, a: TopKArgs): Dispatch[] {
  const { N, k } = a;
  const outOffset = a.outOffset ?? 0;
  if (!Number.isInteger(k) || k < 1 || k > MAX_TOP_K) throw new RangeError(`topK: k = ${k} is not in 1..${MAX_TOP_K}`);
  if (!Number.isInteger(N) || N < 1) throw new RangeError(`topK: N = ${N} must be a positive integer`);
  if (outOffset % 4) throw new RangeError(`topK: outOffset ${outOffset} is not a multiple of 4`);
  if (a.scratch.size < topKScratchBytes(N, k)) throw new RangeError(`topK: scratch of ${a.scratch.size} bytes < ${topKScratchBytes(N, k)}`);
  if (a.out.size < outOffset + 8 * k) throw new RangeError(`topK: out of ${a.out.size} bytes < ${outOffset + 8 * k}`);
  if (a.mask && a.mask.size < 4 * Math.ceil(N / 32)) throw new RangeError(`topK: mask of ${a.mask.size} bytes < ${4 * Math.ceil(N / 32)} for ${N} tokens`);
  const run = runLength(k);
  const groups = passGroups(N, k);
  const [half0] = halves(N, k);
  const transient: GPUBuffer[] = [];
  const out: Dispatch[] = [];
  let n = N;
  for (let pass = 0; pass < groups.length; pass++) {
    const last = pass === groups.length - 1 ? 1 : 0;
    const src = pass % 2 === 1 ? 0 : half0; // where the previous pass wrote (unused by the first)
    const dst = pass % 2 === 0 ? 0 : half0;
    // Params in WGSL order: n, offset, k, run, src, dst, last, outAt
    const u = uniform(ctx.device, a.uniforms, [n, a.offset, k, run, src, dst, last, outOffset / 4], transient);
    const [gx, gy] = grid1d(groups[pass]!);
    if (pass === 0) {
      const p = pipeline(ctx, 'topk', 'first', { MASK: a.mask ? 1 : 0 });
      out.push({ pipeline: p, bindGroup: bindGroup(ctx.device, p, [u, a.x, a.mask ?? null, a.scratch, a.out]), grid: [gx, gy, 1], transient: [] });
    } else {
      const p = pipeline(ctx, 'topk', 'merge', {});
      out.push({ pipeline: p, bindGroup: bindGroup(ctx.device, p, [u, null, null, a.scratch, a.out]), grid: [gx, gy, 1], transient: [] });
    }
    n = groups[pass]! * run;
  }
  out[out.length - 1]!.transient = transient;
  return out;
}

/** Decodes the k pairs read back; entries past the last allowed token are dropped. */
export function decodeTopK(raw: ArrayBuffer | ArrayBufferView, k: number): { ids: Uint32Array; logits: Float32Array } {
  const bytes = raw instanceof ArrayBuffer ? raw : raw.buffer;
  const at = raw instanceof ArrayBuffer ? 0 : raw.byteOffset;
  const length = raw.byteLength;
  if (length < k * 8) throw new RangeError(`decodeTopK: ${length} bytes < ${k} pairs`);
  const view = new DataView(bytes, at, k * 8);
  let n = 0;
  while (n < k && view.getUint32(n * 8 + 4, true) !== NONE) n++;
  const ids = new Uint32Array(n);
  const logits = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    logits[i] = view.getFloat32(i * 8, true);
    ids[i] = view.getUint32(i * 8 + 4, true);
  }
  return { ids, logits };
}
