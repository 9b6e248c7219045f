/**
 * safetensors: an 8-byte little-endian header length, a JSON header mapping tensor names to
 * {dtype, shape, data_offsets: [begin, end]} (offsets relative to the data region after the header), then the data.
 *
 * The reader trusts nothing in the file: every length and offset is checked against the file's real size before
 * anything is allocated or read, so a corrupt or hostile file is a one-line BadInputError, never a crash or a huge
 * allocation. Tensors are read lazily, one byte range at a time.
 */
import fs from 'node:fs';
import path from 'node:path';
import { BadInputError } from '../errors.js';
import { bf16ToF32, f16ToF32 } from './fp16.js';
import { DTYPE_BYTES, type DType, type TensorInfo, type WeightSource } from './tensor-types.js';

/** Headers of real checkpoints are well under 1 MiB; anything this large is corrupt or hostile. */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

/** Element sizes of dtypes that may appear in a file (only DType ones can be read as f32). */
const KNOWN_DTYPES: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1, F8_E4M3: 1, F8_E5M2: 1 };

interface Entry {
  name: string;
  dtype: string;
  shape: number[];
  begin: number;
  end: number;
}

export class SafetensorsFile implements WeightSource {
  private fd: number | null;
  private readonly entries: Map<string, Entry>;
  private readonly meta: Record<string, string>;
  private readonly dataStart: number;
  readonly label: string;

  constructor(readonly file: string) {
    this.label = path.basename(file);
    let fd: number;
    try {
      fd = fs.openSync(file, 'r');
    } catch (e) {
      throw new BadInputError(`${this.label}: cannot open (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
    }
    try {
      const size = fs.fstatSync(fd).size;
      if (size < 8) throw this.bad(`file is ${size} bytes, too short for a header`);
      const lenBuf = Buffer.alloc(8);
      readFully(fd, lenBuf, 0);
      const headerLen = lenBuf.readBigUInt64LE(0);
      if (headerLen > BigInt(Math.min(size - 8, MAX_HEADER_BYTES)))
        throw this.bad(`header length ${headerLen} exceeds the file (${size} bytes)${headerLen > BigInt(MAX_HEADER_BYTES) ? ' or the 100 MiB limit' : ''}`);
      const n = Number(headerLen);
      const headerBuf = Buffer.alloc(n);
      readFully(fd, headerBuf, 8);
      let header: unknown;
      try {
        header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBuf));
      } catch (e) {
        throw this.bad(`header is not valid UTF-8 JSON (${e instanceof Error ? e.message : String(e)})`);
      }
      if (typeof header !== 'object' || header === null || Array.isArray(header)) throw this.bad('header is not a JSON object');
      this.dataStart = 8 + n;
      const dataLen = size - this.dataStart;
      const { entries, meta } = this.parseHeader(header as Record<string, unknown>, dataLen);
      this.entries = entries;
      this.meta = meta;
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
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw this.bad(`tensor "${name}" entry is not an object`);
      const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
      if (typeof dtype !== 'string' || !(dtype in KNOWN_DTYPES)) throw this.bad(`tensor "${name}" has unknown dtype ${JSON.stringify(dtype)}`);
      if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0))
        throw this.bad(`tensor "${name}" shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
      if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0))
        throw this.bad(`tensor "${name}" data_offsets ${JSON.stringify(offsets)} are not two non-negative integers`);
      const [begin, end] = offsets as [number, number];
      if (begin > end || end > dataLen) throw this.bad(`tensor "${name}" data_offsets [${begin}, ${end}] outside the data region (${dataLen} bytes)`);
      let elements = 1;
      for (const d of shape as number[]) {
        elements *= d;
        if (!Number.isSafeInteger(elements)) throw this.bad(`tensor "${name}" shape ${JSON.stringify(shape)} overflows`);
      }
      if (elements * KNOWN_DTYPES[dtype]! !== end - begin)
        throw this.bad(`tensor "${name}" is ${end - begin} bytes but shape ${JSON.stringify(shape)} of ${dtype} needs ${elements * KNOWN_DTYPES[dtype]!}`);
      entries.set(name, { name, dtype, shape: shape as number[], begin, end });
    }
    return { entries, meta };
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  names(): string[] {
    return [...this.entries.keys()];
  }

  info(name: string): TensorInfo {
    const e = this.entry(name);
    return { name, dtype: e.dtype as DType, shape: e.shape.slice() };
  }

  metadata(): Record<string, string> {
    return { ...this.meta };
  }

  readRaw(name: string): Uint8Array {
    const e = this.entry(name);
    if (this.fd === null) throw new Error(`${this.label}: read after close()`);
    // A fresh ArrayBuffer (not Buffer's pool) so typed views over it are aligned.
    const out = new Uint8Array(new ArrayBuffer(e.end - e.begin));
    readFully(this.fd, out, this.dataStart + e.begin);
    return out;
  }

  readF32(name: string): Float32Array {
    const e = this.entry(name);
    if (!(e.dtype in DTYPE_BYTES)) throw this.bad(`tensor "${name}" is ${e.dtype}; only F32, F16 and BF16 weights are supported`);
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
    if (!e) throw this.bad(`no tensor named "${name}"`);
    return e;
  }
}

export function openSafetensors(file: string): SafetensorsFile {
  return new SafetensorsFile(file);
}

function readFully(fd: number, buf: Uint8Array, position: number): void {
  let done = 0;
  while (done < buf.byteLength) {
    const n = fs.readSync(fd, buf, done, buf.byteLength - done, position + done);
    if (n === 0) throw new BadInputError(`unexpected end of file at byte ${position + done}`);
    done += n;
  }
}

export type TensorData = Uint8Array | Float32Array | Uint16Array;

export interface TensorToWrite {
  name: string;
  dtype: DType;
  shape: number[];
  /** The bytes, or a producer called once when this tensor's turn comes (so GB-sized models stream). */
  data: TensorData | (() => TensorData);
}

/**
 * Writes a safetensors file tensor by tensor: the header is computed from the shapes, then each producer is called
 * in order. Written to a temporary name and renamed, so a crash never leaves a half file under the real name.
 */
export function writeSafetensors(file: string, tensors: TensorToWrite[], metadata?: Record<string, string>): void {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of tensors) {
    const bytes = t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype];
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8); // data region starts 8-byte aligned
  const headerBytes = Buffer.from(json, 'utf8');
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w');
  try {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(headerBytes.length));
    fs.writeSync(fd, len);
    fs.writeSync(fd, headerBytes);
    for (const t of tensors) {
      const data = typeof t.data === 'function' ? t.data() : t.data;
      const expected = t.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[t.dtype];
      if (data.byteLength !== expected) throw new Error(`writeSafetensors: tensor "${t.name}" produced ${data.byteLength} bytes, expected ${expected}`);
      const view = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      let done = 0;
      while (done < view.byteLength) done += fs.writeSync(fd, view, done, view.byteLength - done);
    }
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
