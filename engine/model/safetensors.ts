/**
 * safetensors: an 8-byte little-endian header length, a JSON header mapping tensor names to
 * {dtype, shape, data_offsets: [begin, end]} (offsets relative to the data region after the header), then the data.
 *
 * The reader trusts nothing in the file: every length and offset is checked against the file's real size before
 * anything is allocated or read, so a corrupt or hostile file is a one-line BadInputError naming the file, never a
 * crash or a huge allocation. Tensors are read lazily, one byte range at a time.
 */
import fs from 'node:fs';
import path from 'node:path';
import { BadInputError } from '../errors.js';
import { bf16ToF32, f16ToF32 } from './fp16.js';
import { DTYPE_BYTES, type DType, type TensorInfo, type WeightSource } from './tensor-types.js';

/** Headers of real checkpoints are well under 1 MiB; anything this large is corrupt or hostile. */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

/**
 * Element sizes of the dtypes a file may hold. Files with other weights (int8 embeddings, f64 buffers) still open
 * and list them; only the DType ones can be read as f32. A dtype not here at all cannot be size-checked, so it is
 * rejected at open.
 */
const KNOWN_DTYPES: Record<string, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1, F8_E4M3: 1, F8_E5M2: 1,
};

interface Entry {
  dtype: string;
  shape: number[];
  /** Offsets within the data region. */
  begin: number;
  end: number;
}

export class SafetensorsFile implements WeightSource {
  private fd: number | null;
  private readonly entries: Map<string, Entry>;
  private readonly meta: Record<string, string>;
  /** Absolute file offset of the data region. */
  private readonly dataStart: number;
  /** The file's base name: what error messages say. */
  readonly label: string;

  constructor(readonly file: string) {
    this.label = path.basename(file);
    let fd: number;
    try {
      fd = fs.openSync(file, 'r');
    } catch (e) {
      throw this.bad(`cannot open (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
    }
    try {
      const stat = fs.fstatSync(fd);
      // A directory opens fine on Linux and only fails at the first read, with a raw EISDIR.
      if (!stat.isFile()) throw this.bad('not a regular file');
      const size = stat.size;
      if (size < 8) throw this.bad(`file is ${size} bytes, too short for the 8-byte header length`);
      const lenBuf = Buffer.alloc(8);
      this.readAt(fd, lenBuf, 0);
      const declared = lenBuf.readBigUInt64LE(0);
      // Checked as a bigint: a hostile u64 must be rejected before it becomes a (lossy) number or an allocation.
      if (declared > BigInt(MAX_HEADER_BYTES)) throw this.bad(`header length ${declared} is above the ${MAX_HEADER_BYTES >> 20} MiB limit`);
      if (declared > BigInt(size - 8)) throw this.bad(`header length ${declared} exceeds the file (${size} bytes)`);
      const headerLen = Number(declared);
      const headerBuf = Buffer.alloc(headerLen);
      this.readAt(fd, headerBuf, 8);
      let text: string;
      try {
        text = new TextDecoder('utf-8', { fatal: true }).decode(headerBuf);
      } catch {
        throw this.bad('header is not valid UTF-8');
      }
      let header: unknown;
      try {
        header = JSON.parse(text);
      } catch (e) {
        throw this.bad(`header is not valid JSON (${e instanceof Error ? e.message : String(e)})`);
      }
      if (typeof header !== 'object' || header === null || Array.isArray(header)) throw this.bad('header is not a JSON object');
      this.dataStart = 8 + headerLen;
      const parsed = this.parseHeader(header as Record<string, unknown>, size - this.dataStart);
      this.entries = parsed.entries;
      this.meta = parsed.meta;
      this.fd = fd;
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  private bad(msg: string): BadInputError {
    return new BadInputError(`${this.label}: ${msg}`);
  }

  private parseHeader(h: Record<string, unknown>, dataLen: number): { entries: Map<string, Entry>; meta: Record<string, string> } {
    const entries = new Map<string, Entry>();
    let meta: Record<string, string> = {};
    for (const [name, raw] of Object.entries(h)) {
      if (name === '__metadata__') {
        if (typeof raw !== 'object' || raw === null || Array.isArray(raw) || Object.values(raw).some((v) => typeof v !== 'string'))
          throw this.bad('__metadata__ must map strings to strings');
        meta = raw as Record<string, string>;
        continue;
      }
      const t = `tensor ${JSON.stringify(name)}`;
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw this.bad(`${t} entry is not an object`);
      const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
      if (dtype === undefined || shape === undefined || offsets === undefined) {
        const missing = (['dtype', 'shape', 'data_offsets'] as const).filter((k) => (raw as Record<string, unknown>)[k] === undefined);
        throw this.bad(`${t} lacks ${missing.join(', ')}`);
      }
      if (typeof dtype !== 'string' || !Object.hasOwn(KNOWN_DTYPES, dtype)) throw this.bad(`${t} has unknown dtype ${JSON.stringify(dtype)}`);
      if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0))
        throw this.bad(`${t} shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
      if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0))
        throw this.bad(`${t} data_offsets ${JSON.stringify(offsets)} are not two non-negative integers`);
      const [begin, end] = offsets as [number, number];
      if (begin > end || end > dataLen) throw this.bad(`${t} data_offsets [${begin}, ${end}] outside the data region (${dataLen} bytes)`);
      let elements = 1;
      for (const d of shape as number[]) {
        elements *= d;
        if (!Number.isSafeInteger(elements)) throw this.bad(`${t} shape ${JSON.stringify(shape)} overflows`);
      }
      // Exact even past 2^53: the element size is a power of two.
      const needed = elements * KNOWN_DTYPES[dtype]!;
      if (needed !== end - begin) throw this.bad(`${t} is ${end - begin} bytes but shape ${JSON.stringify(shape)} of ${dtype} needs ${needed}`);
      entries.set(name, { dtype, shape: (shape as number[]).slice(), begin, end });
    }
    return { entries, meta };
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  /** Tensor names in header order. */
  names(): string[] {
    return [...this.entries.keys()];
  }

  /**
   * The tensor's description. `dtype` may be one outside DType (e.g. 'I8') for a tensor this reader lists but
   * cannot widen; readF32 says so.
   */
  info(name: string): TensorInfo {
    const e = this.entry(name);
    return { name, dtype: e.dtype as DType, shape: e.shape.slice() };
  }

  /** The header's `__metadata__` (empty when absent). */
  metadata(): Record<string, string> {
    return { ...this.meta };
  }

  /** Where the tensor's bytes lie in the file (absolute offset), e.g. to point ONNX external data at them. */
  byteRange(name: string): { offset: number; length: number } {
    const e = this.entry(name);
    return { offset: this.dataStart + e.begin, length: e.end - e.begin };
  }

  readRaw(name: string): Uint8Array {
    const e = this.entry(name);
    if (this.fd === null) throw new Error(`${this.label}: read after close()`);
    // A fresh ArrayBuffer (not Buffer's shared pool) so typed views over it start at offset 0, aligned.
    const out = new Uint8Array(new ArrayBuffer(e.end - e.begin));
    this.readAt(this.fd, out, this.dataStart + e.begin);
    return out;
  }

  readF32(name: string): Float32Array {
    const e = this.entry(name);
    if (!Object.hasOwn(DTYPE_BYTES, e.dtype)) throw this.bad(`tensor ${JSON.stringify(name)} is ${e.dtype}; only F32, F16 and BF16 tensors can be read as f32`);
    const raw = this.readRaw(name);
    if (e.dtype === 'F32') return new Float32Array(raw.buffer, 0, raw.byteLength / 4);
    const halves = new Uint16Array(raw.buffer, 0, raw.byteLength / 2);
    return e.dtype === 'F16' ? f16ToF32(halves) : bf16ToF32(halves);
  }

  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }

  private entry(name: string): Entry {
    const e = this.entries.get(name);
    if (!e) throw this.bad(`no tensor named ${JSON.stringify(name)}`);
    return e;
  }

  /** Fills `buf` from `position`; a file that shrank since open (truncated underneath us) is a BadInputError. */
  private readAt(fd: number, buf: Uint8Array, position: number): void {
    let done = 0;
    while (done < buf.byteLength) {
      const n = fs.readSync(fd, buf, done, buf.byteLength - done, position + done);
      if (n === 0) throw this.bad(`unexpected end of file at byte ${position + done} (truncated while open?)`);
      done += n;
    }
  }
}

export function openSafetensors(file: string): SafetensorsFile {
  return new SafetensorsFile(file);
}

export type TensorData = Uint8Array | Float32Array | Uint16Array;

export interface TensorToWrite {
  name: string;
  dtype: DType;
  shape: number[];
  /** The bytes, or a producer called once when this tensor's turn comes (so GB-sized models stream). */
  data: TensorData | (() => TensorData);
}

let tmpCounter = 0;

/**
 * Writes a safetensors file tensor by tensor: the header is computed from the shapes, then each producer is called
 * in order and its bytes written before the next is called, so at most one tensor is held. Written to a temporary
 * name beside the target, synced, then renamed: a crash or a failing producer never leaves a half file under the
 * real name (an existing file there stays intact).
 */
export function writeSafetensors(file: string, tensors: TensorToWrite[], metadata?: Record<string, string>): void {
  // No prototype: a tensor named "__proto__" must become a key, not replace the object's prototype.
  const header: Record<string, unknown> = Object.create(null);
  if (metadata) header.__metadata__ = metadata;
  const sizes: number[] = [];
  let offset = 0;
  for (const t of tensors) {
    if (t.name === '__metadata__' || Object.hasOwn(header, t.name)) throw new Error(`writeSafetensors: duplicate or reserved tensor name ${JSON.stringify(t.name)}`);
    if (!Object.hasOwn(DTYPE_BYTES, t.dtype)) throw new Error(`writeSafetensors: tensor ${JSON.stringify(t.name)} has unsupported dtype ${JSON.stringify(t.dtype)}`);
    let elements = 1;
    for (const d of t.shape) {
      if (!Number.isSafeInteger(d) || d < 0) throw new Error(`writeSafetensors: tensor ${JSON.stringify(t.name)} has invalid shape ${JSON.stringify(t.shape)}`);
      elements *= d;
    }
    const bytes = elements * DTYPE_BYTES[t.dtype];
    if (!Number.isSafeInteger(offset + bytes)) throw new Error(`writeSafetensors: tensor ${JSON.stringify(t.name)} shape ${JSON.stringify(t.shape)} overflows`);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    sizes.push(bytes);
    offset += bytes;
  }
  let json = JSON.stringify(header);
  // The format allows trailing spaces in the header; padding to 8 bytes puts the data region on an 8-byte boundary
  // so readers that map the file can view tensors in place.
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');

  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.tmp-${process.pid}-${tmpCounter++}`);
  const fd = fs.openSync(tmp, 'w');
  try {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(headerBytes.length));
    writeAll(fd, len);
    writeAll(fd, headerBytes);
    tensors.forEach((t, i) => {
      const data = typeof t.data === 'function' ? t.data() : t.data;
      if (data.byteLength !== sizes[i]) throw new Error(`writeSafetensors: tensor ${JSON.stringify(t.name)} produced ${data.byteLength} bytes, expected ${sizes[i]}`);
      writeAll(fd, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    });
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(tmp, file);
  } catch (e) {
    try {
      fs.closeSync(fd);
    } catch {
      /* already closed */
    }
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}

function writeAll(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.byteLength) done += fs.writeSync(fd, bytes, done, bytes.byteLength - done);
}
