/**
 * ggml's tensor storage types as GGUF files hold them: which ones mgd reads, their block layouts, and the
 * dequantization of each into f32 (what both backends then take, re-quantizing to their own formats if asked).
 *
 * Layouts follow ggml-common.h (all little-endian; `d`/`m` are f16 scales):
 *   Q4_0  32 values, 18 B: d, qs[16]                       x = (nibble - 8) d           (low nibbles: values 0-15)
 *   Q4_1  32 values, 20 B: d, m, qs[16]                    x = nibble d + m
 *   Q5_0  32 values, 22 B: d, qh u32, qs[16]               x = (nibble | qh bit << 4) - 16) d
 *   Q5_1  32 values, 24 B: d, m, qh u32, qs[16]            x = (nibble | qh bit << 4) d + m
 *   Q8_0  32 values, 34 B: d, qs[32] int8                  x = q d
 *   Q4_K 256 values, 144 B: d, dmin, scales[12], qs[128]   8 groups of 32, 6-bit scale and min each
 *   Q5_K 256 values, 176 B: d, dmin, scales[12], qh[32], qs[128]
 *   Q6_K 256 values, 210 B: ql[128], qh[64], scales[16] int8, d   16 groups of 16, x = (q6 - 32) d scale
 * The quantizers below are the simple reference ones (round to nearest per block; for the K types one min/max pass
 * per group): what our GGUF export writes and what the tests use to make files llama.cpp then runs. llama.cpp's own
 * quantizers search scales more carefully; dequantization is the same for any file.
 */
import { BadInputError } from '../errors.js';
import { bf16ToF32, f16ToF32, f32ToF16 } from './fp16.js';

/** ggml_type values of the types mgd reads, with their names as llama.cpp prints them. */
export const GGML_TYPES = {
  F32: 0,
  F16: 1,
  Q4_0: 2,
  Q4_1: 3,
  Q5_0: 6,
  Q5_1: 7,
  Q8_0: 8,
  Q4_K: 12,
  Q5_K: 13,
  Q6_K: 14,
  BF16: 30,
} as const;
export type GgmlTypeName = keyof typeof GGML_TYPES;

/** Names of ggml types we do not read, for the one-line error that names what a file holds. */
const OTHER_TYPES: Record<number, string> = {
  9: 'Q8_1',
  10: 'Q2_K',
  11: 'Q3_K',
  15: 'Q8_K',
  16: 'IQ2_XXS',
  17: 'IQ2_XS',
  18: 'IQ3_XXS',
  19: 'IQ1_S',
  20: 'IQ4_NL',
  21: 'IQ3_S',
  22: 'IQ2_S',
  23: 'IQ4_XS',
  24: 'I8',
  25: 'I16',
  26: 'I32',
  27: 'I64',
  28: 'F64',
  29: 'IQ1_M',
  34: 'TQ1_0',
  35: 'TQ2_0',
  39: 'MXFP4',
};

interface BlockFormat {
  /** Values per block. */
  values: number;
  /** Bytes per block. */
  bytes: number;
  /** Writes `values` f32 values of the block at `src[at..]` into `out[o..]`. */
  decode: (src: DataView, at: number, out: Float32Array, o: number) => void;
}

const QK = 32;
const QK_K = 256;
const half = (v: DataView, at: number) => f16(v.getUint16(at, true));
const f16Scratch = new Uint16Array(1);
const f32Scratch = new Float32Array(1);
function f16(bits: number): number {
  f16Scratch[0] = bits;
  return f16ToF32(f16Scratch, f32Scratch)[0]!;
}

/** The 6-bit scale and min of group j of a Q4_K/Q5_K block (ggml's get_scale_min_k4). */
function scaleMin(v: DataView, scales: number, j: number): [number, number] {
  const q = (i: number) => v.getUint8(scales + i);
  if (j < 4) return [q(j) & 63, q(j + 4) & 63];
  return [(q(j + 4) & 0xf) | ((q(j - 4) >> 6) << 4), (q(j + 4) >> 4) | ((q(j) >> 6) << 4)];
}

/**
 * Q4_K / Q5_K: four chunks of 64 values, each 32 bytes whose low nibbles are group 2c and high nibbles group 2c+1;
 * Q5_K adds a fifth bit per value from qh[32] (bit 2c, 2c+1 of byte l).
 */
function decodeK(v: DataView, at: number, out: Float32Array, o: number, qh: number | null): void {
  const d = half(v, at);
  const dmin = half(v, at + 2);
  const qs = qh === null ? at + 16 : at + 48;
  for (let c = 0; c < 4; c++) {
    const [s0, m0] = scaleMin(v, at + 4, 2 * c);
    const [s1, m1] = scaleMin(v, at + 4, 2 * c + 1);
    for (let l = 0; l < 32; l++) {
      const q = v.getUint8(qs + 32 * c + l);
      const h = qh === null ? 0 : v.getUint8(qh + l);
      out[o + 64 * c + l] = d * s0 * ((q & 0xf) | (((h >> (2 * c)) & 1) << 4)) - dmin * m0;
      out[o + 64 * c + 32 + l] = d * s1 * ((q >> 4) | (((h >> (2 * c + 1)) & 1) << 4)) - dmin * m1;
    }
  }
}

const FORMATS: Partial<Record<number, BlockFormat>> = {
  [GGML_TYPES.Q4_0]: {
    values: QK,
    bytes: 18,
    decode(v, at, out, o) {
      const d = half(v, at);
      for (let j = 0; j < 16; j++) {
        const q = v.getUint8(at + 2 + j);
        out[o + j] = ((q & 0xf) - 8) * d;
        out[o + j + 16] = ((q >> 4) - 8) * d;
      }
    },
  },
  [GGML_TYPES.Q4_1]: {
    values: QK,
    bytes: 20,
    decode(v, at, out, o) {
      const d = half(v, at);
      const m = half(v, at + 2);
      for (let j = 0; j < 16; j++) {
        const q = v.getUint8(at + 4 + j);
        out[o + j] = (q & 0xf) * d + m;
        out[o + j + 16] = (q >> 4) * d + m;
      }
    },
  },
  [GGML_TYPES.Q5_0]: {
    values: QK,
    bytes: 22,
    decode(v, at, out, o) {
      const d = half(v, at);
      const qh = v.getUint32(at + 2, true);
      for (let j = 0; j < 16; j++) {
        const q = v.getUint8(at + 6 + j);
        out[o + j] = (((q & 0xf) | (((qh >>> j) & 1) << 4)) - 16) * d;
        out[o + j + 16] = (((q >> 4) | (((qh >>> (j + 16)) & 1) << 4)) - 16) * d;
      }
    },
  },
  [GGML_TYPES.Q5_1]: {
    values: QK,
    bytes: 24,
    decode(v, at, out, o) {
      const d = half(v, at);
      const m = half(v, at + 2);
      const qh = v.getUint32(at + 4, true);
      for (let j = 0; j < 16; j++) {
        const q = v.getUint8(at + 8 + j);
        out[o + j] = ((q & 0xf) | (((qh >>> j) & 1) << 4)) * d + m;
        out[o + j + 16] = ((q >> 4) | (((qh >>> (j + 16)) & 1) << 4)) * d + m;
      }
    },
  },
  [GGML_TYPES.Q8_0]: {
    values: QK,
    bytes: 34,
    decode(v, at, out, o) {
      const d = half(v, at);
      for (let j = 0; j < QK; j++) out[o + j] = v.getInt8(at + 2 + j) * d;
    },
  },
  [GGML_TYPES.Q4_K]: { values: QK_K, bytes: 144, decode: (v, at, out, o) => decodeK(v, at, out, o, null) },
  [GGML_TYPES.Q5_K]: { values: QK_K, bytes: 176, decode: (v, at, out, o) => decodeK(v, at, out, o, at + 16) },
  [GGML_TYPES.Q6_K]: {
    values: QK_K,
    bytes: 210,
    decode(v, at, out, o) {
      const ql = at;
      const qh = at + 128;
      const sc = at + 192;
      const d = half(v, at + 208);
      // two chunks of 128 values; per l, four values 32 apart share one qh byte (2 bits each)
      for (let n = 0; n < 2; n++)
        for (let l = 0; l < 32; l++) {
          const is = l >> 4;
          const lo0 = v.getUint8(ql + 64 * n + l);
          const lo1 = v.getUint8(ql + 64 * n + l + 32);
          const h = v.getUint8(qh + 32 * n + l);
          const s = (k: number) => d * v.getInt8(sc + 8 * n + is + k);
          const y = o + 128 * n + l;
          out[y] = s(0) * (((lo0 & 0xf) | ((h & 3) << 4)) - 32);
          out[y + 32] = s(2) * (((lo1 & 0xf) | (((h >> 2) & 3) << 4)) - 32);
          out[y + 64] = s(4) * (((lo0 >> 4) | (((h >> 4) & 3) << 4)) - 32);
          out[y + 96] = s(6) * (((lo1 >> 4) | (((h >> 6) & 3) << 4)) - 32);
        }
    },
  },
};

/** The type's name (`Q4_K`), or `type N` for a value ggml does not define. */
export function ggmlTypeName(type: number): string {
  const known = (Object.keys(GGML_TYPES) as GgmlTypeName[]).find((k) => GGML_TYPES[k] === type);
  return known ?? OTHER_TYPES[type] ?? `type ${type}`;
}

/** The types mgd reads, as error messages list them. */
export const READABLE_TYPES = Object.keys(GGML_TYPES).join(', ');

function unreadable(type: number): BadInputError {
  return new BadInputError(`GGUF tensors of ${ggmlTypeName(type)} cannot be read (mgd reads ${READABLE_TYPES})`);
}

/** Whether mgd can read tensors of this type. */
export function isReadableType(type: number): boolean {
  return type === GGML_TYPES.F32 || type === GGML_TYPES.F16 || type === GGML_TYPES.BF16 || FORMATS[type] !== undefined;
}

/** Values per block of the type (1 for the float types). */
export function blockValues(type: number): number {
  return FORMATS[type]?.values ?? 1;
}

/** Bytes `n` values of the type take; the caller has checked n is a whole number of blocks. */
export function storedBytes(type: number, n: number): number {
  if (type === GGML_TYPES.F32) return 4 * n;
  if (type === GGML_TYPES.F16 || type === GGML_TYPES.BF16) return 2 * n;
  const f = FORMATS[type];
  if (!f) throw unreadable(type);
  return (n / f.values) * f.bytes;
}

/** The stored bytes as f32 values. */
export function dequantize(type: number, bytes: Uint8Array, n: number): Float32Array {
  // the float types are views of the bytes where they are aligned (a fresh read is), copied only where not
  const aligned = (size: number) => (bytes.byteOffset % size === 0 ? bytes : bytes.slice());
  if (type === GGML_TYPES.F32) {
    const b = aligned(4);
    return new Float32Array(b.buffer, b.byteOffset, n);
  }
  if (type === GGML_TYPES.F16 || type === GGML_TYPES.BF16) {
    const b = aligned(2);
    const halves = new Uint16Array(b.buffer, b.byteOffset, n);
    return type === GGML_TYPES.F16 ? f16ToF32(halves) : bf16ToF32(halves);
  }
  const f = FORMATS[type];
  if (!f) throw unreadable(type);
  const out = new Float32Array(n);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let b = 0, at = 0; b < n / f.values; b++, at += f.bytes) f.decode(view, at, out, b * f.values);
  return out;
}

// ---- quantizers (reference: round to nearest)

const toHalf = (x: number) => {
  f32Scratch[0] = x;
  return f32ToF16(f32Scratch, f16Scratch)[0]!;
};

/** Quantizes `x` (a whole number of blocks) into the type's blocks. */
export function quantize(type: number, x: Float32Array): Uint8Array {
  const f = FORMATS[type];
  const quant = QUANTIZERS[type];
  if (!f || !quant) throw new Error(`no quantizer for ${ggmlTypeName(type)}`);
  if (x.length % f.values !== 0) throw new RangeError(`${ggmlTypeName(type)}: ${x.length} values is not a multiple of ${f.values}`);
  const out = new Uint8Array((x.length / f.values) * f.bytes);
  const view = new DataView(out.buffer);
  for (let b = 0; b < x.length / f.values; b++) quant(x.subarray(b * f.values, (b + 1) * f.values), view, b * f.bytes);
  return out;
}

/** The value of largest magnitude, with its sign (ggml's q4_0/q5_0 scale is taken from it). */
function signedAbsMax(x: Float32Array): number {
  let max = 0;
  for (const v of x) if (Math.abs(v) > Math.abs(max)) max = v;
  return max;
}

function minMax(x: Float32Array): [number, number] {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of x) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  return [lo, hi];
}

/** The 12-byte packing scaleMin reads: 6-bit scales and mins of 8 groups. */
function packScaleMin(v: DataView, at: number, sc: number[], mn: number[]): void {
  for (let j = 0; j < 4; j++) {
    v.setUint8(at + j, (sc[j]! & 63) | ((sc[j + 4]! >> 4) << 6));
    v.setUint8(at + j + 4, (mn[j]! & 63) | ((mn[j + 4]! >> 4) << 6));
    v.setUint8(at + j + 8, (sc[j + 4]! & 0xf) | ((mn[j + 4]! & 0xf) << 4));
  }
}

/** Q4_K / Q5_K groups: x ≈ d·sc·q − dmin·m, q in [0, levels]. Returns the codes per value, writes d/dmin/scales. */
function kGroups(x: Float32Array, levels: number, v: DataView, at: number): Uint8Array {
  const scale: number[] = [];
  const min: number[] = [];
  for (let g = 0; g < 8; g++) {
    const [lo, hi] = minMax(x.subarray(32 * g, 32 * g + 32));
    const l = Math.min(lo, 0);
    scale.push((hi - l) / levels);
    min.push(-l);
  }
  const d = Math.max(...scale) / 63;
  const dmin = Math.max(...min) / 63;
  v.setUint16(at, toHalf(d), true);
  v.setUint16(at + 2, toHalf(dmin), true);
  const dq = half(v, at);
  const dminq = half(v, at + 2);
  // scales rounded up, so no value of the group falls outside the codes it can use
  const sc = scale.map((s) => (dq ? Math.min(63, Math.ceil(s / dq - 1e-6)) : 0));
  const mn = min.map((m) => (dminq ? Math.min(63, Math.round(m / dminq)) : 0));
  packScaleMin(v, at + 4, sc, mn);
  const q = new Uint8Array(QK_K);
  for (let i = 0; i < QK_K; i++) {
    const g = i >> 5;
    const step = dq * sc[g]!;
    q[i] = step ? Math.max(0, Math.min(levels, Math.round((x[i]! + dminq * mn[g]!) / step))) : 0;
  }
  return q;
}

const QUANTIZERS: Partial<Record<number, (x: Float32Array, v: DataView, at: number) => void>> = {
  [GGML_TYPES.Q4_0](x, v, at) {
    const d = signedAbsMax(x) / -8;
    const id = d ? 1 / d : 0;
    v.setUint16(at, toHalf(d), true);
    for (let j = 0; j < 16; j++) {
      const a = Math.min(15, Math.trunc(x[j]! * id + 8.5));
      const b = Math.min(15, Math.trunc(x[j + 16]! * id + 8.5));
      v.setUint8(at + 2 + j, a | (b << 4));
    }
  },
  [GGML_TYPES.Q4_1](x, v, at) {
    const [lo, hi] = minMax(x);
    const d = (hi - lo) / 15;
    const id = d ? 1 / d : 0;
    v.setUint16(at, toHalf(d), true);
    v.setUint16(at + 2, toHalf(lo), true);
    for (let j = 0; j < 16; j++) {
      const a = Math.min(15, Math.trunc((x[j]! - lo) * id + 0.5));
      const b = Math.min(15, Math.trunc((x[j + 16]! - lo) * id + 0.5));
      v.setUint8(at + 4 + j, a | (b << 4));
    }
  },
  [GGML_TYPES.Q5_0](x, v, at) {
    const d = signedAbsMax(x) / -16;
    const id = d ? 1 / d : 0;
    v.setUint16(at, toHalf(d), true);
    let qh = 0;
    for (let j = 0; j < 16; j++) {
      const a = Math.min(31, Math.trunc(x[j]! * id + 16.5));
      const b = Math.min(31, Math.trunc(x[j + 16]! * id + 16.5));
      v.setUint8(at + 6 + j, (a & 0xf) | ((b & 0xf) << 4));
      qh |= ((a >> 4) << j) | ((b >> 4) << (j + 16));
    }
    v.setUint32(at + 2, qh >>> 0, true);
  },
  [GGML_TYPES.Q5_1](x, v, at) {
    const [lo, hi] = minMax(x);
    const d = (hi - lo) / 31;
    const id = d ? 1 / d : 0;
    v.setUint16(at, toHalf(d), true);
    v.setUint16(at + 2, toHalf(lo), true);
    let qh = 0;
    for (let j = 0; j < 16; j++) {
      const a = Math.min(31, Math.trunc((x[j]! - lo) * id + 0.5));
      const b = Math.min(31, Math.trunc((x[j + 16]! - lo) * id + 0.5));
      v.setUint8(at + 8 + j, (a & 0xf) | ((b & 0xf) << 4));
      qh |= ((a >> 4) << j) | ((b >> 4) << (j + 16));
    }
    v.setUint32(at + 4, qh >>> 0, true);
  },
  [GGML_TYPES.Q8_0](x, v, at) {
    let amax = 0;
    for (const e of x) amax = Math.max(amax, Math.abs(e));
    const d = Math.fround(amax / 127);
    const id = d ? Math.fround(1 / d) : 0;
    v.setUint16(at, toHalf(d), true);
    for (let j = 0; j < QK; j++) {
      const s = Math.fround(x[j]! * id);
      v.setInt8(at + 2 + j, Math.sign(s) * Math.round(Math.abs(s))); // roundf: halves away from zero
    }
  },
  [GGML_TYPES.Q4_K](x, v, at) {
    const q = kGroups(x, 15, v, at);
    for (let c = 0; c < 4; c++) for (let l = 0; l < 32; l++) v.setUint8(at + 16 + 32 * c + l, q[64 * c + l]! | (q[64 * c + 32 + l]! << 4));
  },
  [GGML_TYPES.Q5_K](x, v, at) {
    const q = kGroups(x, 31, v, at);
    for (let l = 0; l < 32; l++) {
      let h = 0;
      for (let c = 0; c < 4; c++) h |= ((q[64 * c + l]! >> 4) << (2 * c)) | ((q[64 * c + 32 + l]! >> 4) << (2 * c + 1));
      v.setUint8(at + 16 + l, h);
    }
    for (let c = 0; c < 4; c++) for (let l = 0; l < 32; l++) v.setUint8(at + 48 + 32 * c + l, (q[64 * c + l]! & 0xf) | ((q[64 * c + 32 + l]! & 0xf) << 4));
  },
  [GGML_TYPES.Q6_K](x, v, at) {
    // 16 groups of 16: x ≈ d·sc·(q − 32), sc int8, q in [0, 63]
    const scale: number[] = [];
    for (let g = 0; g < 16; g++) scale.push(signedAbsMax(x.subarray(16 * g, 16 * g + 16)) / -32);
    const big = signedAbsMax(Float32Array.from(scale));
    const d = big / -127;
    v.setUint16(at + 208, toHalf(d), true);
    const dq = half(v, at + 208);
    // scales rounded away from zero, so no value of the group falls outside the codes it can use
    const sc = scale.map((s) => (dq ? Math.sign(s / dq) * Math.min(127, Math.ceil(Math.abs(s / dq) - 1e-6)) : 0));
    sc.forEach((s, g) => v.setInt8(at + 192 + g, s));
    const q = new Uint8Array(QK_K);
    for (let i = 0; i < QK_K; i++) {
      const step = dq * sc[i >> 4]!;
      q[i] = step ? Math.max(0, Math.min(63, Math.round(x[i]! / step) + 32)) : 32;
    }
    for (let n = 0; n < 2; n++)
      for (let l = 0; l < 32; l++) {
        const [a, b, c, e] = [q[128 * n + l]!, q[128 * n + l + 32]!, q[128 * n + l + 64]!, q[128 * n + l + 96]!];
        v.setUint8(at + 64 * n + l, (a & 0xf) | ((c & 0xf) << 4));
        v.setUint8(at + 64 * n + l + 32, (b & 0xf) | ((e & 0xf) << 4));
        v.setUint8(at + 128 + 32 * n + l, (a >> 4) | ((b >> 4) << 2) | ((c >> 4) << 4) | ((e >> 4) << 6));
      }
  },
};
