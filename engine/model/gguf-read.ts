/**
 * Reading GGUF (versions 2 and 3), llama.cpp's model file: the header (metadata and tensor infos, every length and
 * offset bounds-checked against the file, so a truncated or hostile file is a one-line error, never a huge
 * allocation) and each tensor's stored bytes on demand, so a multi-GB file is streamed tensor by tensor.
 * The layout itself is described in gguf.ts (the writer); the tensor types in gguf-quants.ts.
 */
import fs from 'node:fs';
import path from 'node:path';
import { BadInputError } from '../errors.js';
import { blockValues, ggmlTypeName, isReadableType, READABLE_TYPES, storedBytes } from './gguf-quants.js';

export const GGUF_MAGIC = 0x46554747; // "GGUF" little-endian
export const GGUF_VERSION = 3;
export const ALIGNMENT = 32;

/** gguf_type: the metadata value types. */
export enum V {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
}

export interface GgufTensorInfo {
  name: string;
  /** ggml dims, fastest-varying first. */
  ne: number[];
  type: number;
  /** Offset from the start of the data region. */
  offset: number;
}

export interface GgufHeader {
  version: number;
  metadata: Map<string, unknown>;
  tensors: GgufTensorInfo[];
  /** Absolute file offset of the data region. */
  dataStart: number;
}

/** Whether the file starts with GGUF's magic (Ollama's blobs have no extension; this is how they are told apart). */
export function isGgufFile(file: string): boolean {
  let fd: number | null = null;
  try {
    fd = fs.openSync(file, 'r');
    const b = Buffer.alloc(4);
    return fs.readSync(fd, b, 0, 4, 0) === 4 && b.readUInt32LE(0) === GGUF_MAGIC;
  } catch {
    return false;
  } finally {
    if (fd !== null) fs.closeSync(fd);
  }
}

/** The header never goes past this (a few MB for a 150k-token vocabulary; llama.cpp's own limit is similar). */
const MAX_HEADER = 256 << 20;

/** A header that runs past the bytes read so far: read more, or say it is truncated. */
class ShortRead extends Error {}

export function readGgufHeader(file: string): GgufHeader {
  // Read a prefix that grows until the header fits: a few MB for real models, never the weights behind it.
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    for (let n = Math.min(size, 4 << 20); ; n = Math.min(size, MAX_HEADER, n * 4)) {
      const buf = Buffer.alloc(n);
      fs.readSync(fd, buf, 0, n, 0);
      try {
        return parseHeader(buf, size, path.basename(file));
      } catch (e) {
        if (!(e instanceof ShortRead)) throw e;
        if (n === size || n === MAX_HEADER) throw new BadInputError(`${path.basename(file)}: truncated GGUF header`);
      }
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** The header from the file's first bytes `buf` (of a file of `size` bytes); ShortRead if it goes past them. */
function parseHeader(buf: Buffer, size: number, label: string): GgufHeader {
  let at = 0;
  const need = (n: number) => {
    if (at + n > buf.length) throw new ShortRead();
  };
  const rU32 = () => (need(4), (at += 4), buf.readUInt32LE(at - 4));
  const rU64 = () => {
    need(8);
    const v = buf.readBigUInt64LE(at);
    at += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new BadInputError(`${label}: GGUF value out of range`);
    return Number(v);
  };
  const rStr = () => {
    const n = rU64();
    need(n);
    at += n;
    return buf.toString('utf8', at - n, at);
  };
  const rScalar = (t: number): unknown => {
    switch (t) {
      case V.U8:
        return need(1), buf.readUInt8(at++);
      case V.I8:
        return need(1), buf.readInt8(at++);
      case V.U16:
        return need(2), (at += 2), buf.readUInt16LE(at - 2);
      case V.I16:
        return need(2), (at += 2), buf.readInt16LE(at - 2);
      case V.U32:
        return rU32();
      case V.I32:
        return need(4), (at += 4), buf.readInt32LE(at - 4);
      case V.F32:
        return need(4), (at += 4), buf.readFloatLE(at - 4);
      case V.BOOL:
        return need(1), buf.readUInt8(at++) !== 0;
      case V.STRING:
        return rStr();
      case V.U64:
        return rU64();
      case V.I64:
        return need(8), (at += 8), Number(buf.readBigInt64LE(at - 8));
      case V.F64:
        return need(8), (at += 8), buf.readDoubleLE(at - 8);
      case V.ARRAY: {
        const et = rU32();
        const n = rU64();
        if (n > size) throw new BadInputError(`${label}: GGUF array length ${n} exceeds the file`);
        return Array.from({ length: n }, () => rScalar(et));
      }
      default:
        throw new BadInputError(`${label}: unknown GGUF value type ${t}`);
    }
  };
  if (size < 4 || buf.readUInt32LE(0) !== GGUF_MAGIC) throw new BadInputError(`${label}: not a GGUF file`);
  at = 4;
  const version = rU32();
  if (version !== 2 && version !== 3) throw new BadInputError(`${label}: GGUF version ${version} (mgd reads versions 2 and 3)`);
  const nTensors = rU64();
  const nMeta = rU64();
  if (nTensors > size || nMeta > size) throw new BadInputError(`${label}: GGUF counts exceed the file`);
  const metadata = new Map<string, unknown>();
  for (let i = 0; i < nMeta; i++) {
    const key = rStr();
    metadata.set(key, rScalar(rU32()));
  }
  const tensors: GgufTensorInfo[] = [];
  for (let i = 0; i < nTensors; i++) {
    const name = rStr();
    const nd = rU32();
    if (nd < 1 || nd > 4) throw new BadInputError(`${label}: tensor ${JSON.stringify(name)} has ${nd} dimensions`);
    const ne = Array.from({ length: nd }, rU64);
    tensors.push({ name, ne, type: rU32(), offset: rU64() });
  }
  const alignment = metadata.get('general.alignment');
  const align = typeof alignment === 'number' && alignment > 0 && Number.isInteger(alignment) ? alignment : ALIGNMENT;
  return { version, metadata, tensors, dataStart: at + ((align - (at % align)) % align) };
}

/** A GGUF file opened for reading tensors: the header, and each tensor's bytes read when asked. */
export class GgufFile {
  readonly header: GgufHeader;
  private readonly byName = new Map<string, GgufTensorInfo>();
  private fd: number | null = null;

  constructor(readonly file: string) {
    this.header = readGgufHeader(file);
    const size = fs.statSync(file).size;
    const label = path.basename(file);
    for (const t of this.header.tensors) {
      if (this.byName.has(t.name)) throw new BadInputError(`${label}: tensor ${JSON.stringify(t.name)} appears twice`);
      this.byName.set(t.name, t);
      // Types we cannot read fail when read (a file may hold one we never need); what we can read must fit the file.
      if (!isReadableType(t.type)) continue;
      const n = elements(t);
      if (n % blockValues(t.type) !== 0) throw new BadInputError(`${label}: tensor ${t.name} of ${ggmlTypeName(t.type)} has ${t.ne[0]} values per row, not a whole number of blocks`);
      const end = this.header.dataStart + t.offset + storedBytes(t.type, n);
      if (end > size) throw new BadInputError(`${label}: tensor ${t.name} ends at byte ${end}, past the end of the file (${size} bytes): the file is truncated`);
    }
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  tensor(name: string): GgufTensorInfo {
    const t = this.byName.get(name);
    if (!t) throw new BadInputError(`${path.basename(this.file)}: no tensor named ${JSON.stringify(name)}`);
    return t;
  }

  /** The tensor's stored bytes (ggml blocks, ggml dimension order). */
  read(name: string): Uint8Array {
    const t = this.tensor(name);
    if (!isReadableType(t.type)) throw new BadInputError(`${path.basename(this.file)}: tensor ${name} is ${ggmlTypeName(t.type)}, a type mgd cannot read (${READABLE_TYPES})`);
    const bytes = new Uint8Array(storedBytes(t.type, elements(t)));
    this.fd ??= fs.openSync(this.file, 'r');
    let done = 0;
    while (done < bytes.length) {
      const n = fs.readSync(this.fd, bytes, done, bytes.length - done, this.header.dataStart + t.offset + done);
      if (n === 0) throw new BadInputError(`${path.basename(this.file)}: tensor ${name} is cut short (the file shrank while open)`);
      done += n;
    }
    return bytes;
  }

  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }
}

export function elements(t: GgufTensorInfo): number {
  return t.ne.reduce((a, b) => a * b, 1);
}
