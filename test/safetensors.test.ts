/**
 * The safetensors reader trusts nothing: every hostile or corrupt header is a one-line BadInputError naming the file
 * and the problem, never a crash or a huge allocation. The writer round-trips all three dtypes, streams tensor by
 * tensor and never leaves a half file under the real name. Sharded checkpoints read as one source.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BadInputError } from '../engine/errors.js';
import { f32ToBf16, f32ToF16 } from '../engine/model/fp16.js';
import { openSafetensors, writeSafetensors, type TensorToWrite } from '../engine/model/safetensors.js';
import { openWeights } from '../engine/model/weights.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mgd-st-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
let n = 0;

/** A file with the given header (object, JSON text or raw bytes), `dataBytes` zero bytes after it, and optionally a lying length. */
function fileWith(header: unknown, dataBytes = 0, lengthOverride?: bigint): string {
  const json = Buffer.isBuffer(header) ? header : Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lengthOverride ?? BigInt(json.length));
  const f = path.join(tmp, `f${n++}.safetensors`);
  fs.writeFileSync(f, Buffer.concat([len, json, Buffer.alloc(dataBytes)]));
  return f;
}

function errorOf(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a throw');
}

/** Opening (and reading "x" from) `f` fails with a one-line BadInputError that names the file. */
function expectBad(f: string, message: RegExp): void {
  const err = errorOf(() => openSafetensors(f).readF32('x'));
  expect(err).toBeInstanceOf(BadInputError);
  expect(err.message).toMatch(message);
  expect(err.message).not.toContain('\n');
  expect(err.message.startsWith(`${path.basename(f)}: `)).toBe(true);
}

const entry = (x: object) => ({ x: { dtype: 'F32', shape: [1], data_offsets: [0, 4], ...x } });

describe('safetensors reader: hostile and corrupt files', () => {
  it('too short for the header length', () => {
    const f = path.join(tmp, 'short.safetensors');
    fs.writeFileSync(f, Buffer.from([1, 2, 3]));
    expectBad(f, /file is 3 bytes, too short/);
    fs.writeFileSync(f, Buffer.alloc(0));
    expectBad(f, /file is 0 bytes/);
  });

  it('a header length beyond the file or above the cap is rejected before any allocation', () => {
    expectBad(fileWith({}, 0, 1000n), /header length 1000 exceeds the file \(10 bytes\)/);
    expectBad(fileWith({}, 0, (1n << 64n) - 1n), /header length 18446744073709551615 is above the 100 MiB limit/);
    // A (sparse) file big enough to hold the declared 101 MiB header: the cap, not the file size, stops it.
    const f = fileWith({}, 0, 101n << 20n);
    fs.truncateSync(f, 102 << 20);
    expectBad(f, /header length 105906176 is above the 100 MiB limit/);
  });

  it('a header that is not UTF-8, not JSON, or not an object', () => {
    expectBad(fileWith(Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d])), /header is not valid UTF-8/);
    expectBad(fileWith('{"x": '), /header is not valid JSON/);
    expectBad(fileWith(''), /header is not valid JSON/);
    for (const h of ['[1,2]', 'null', '42', '"x"']) expectBad(fileWith(h), /header is not a JSON object/);
  });

  it('entries that are not objects or lack fields', () => {
    expectBad(fileWith({ x: 5 }), /tensor "x" entry is not an object/);
    expectBad(fileWith({ x: null }), /entry is not an object/);
    expectBad(fileWith({ x: [] }), /entry is not an object/);
    expectBad(fileWith({ x: { shape: [1], data_offsets: [0, 4] } }, 4), /tensor "x" lacks dtype/);
    expectBad(fileWith({ x: { dtype: 'F32' } }, 4), /tensor "x" lacks shape, data_offsets/);
  });

  it('unknown dtypes', () => {
    expectBad(fileWith(entry({ dtype: 'F99' }), 4), /tensor "x" has unknown dtype "F99"/);
    expectBad(fileWith(entry({ dtype: 4 }), 4), /unknown dtype 4/);
    expectBad(fileWith(entry({ dtype: 'toString' }), 4), /unknown dtype "toString"/);
  });

  it('shapes that are not lists of non-negative safe integers, or overflow', () => {
    for (const shape of [[-1], [1.5], ['1'], 4, null, [2 ** 53]])
      expectBad(fileWith(entry({ shape }), 4), /tensor "x" shape .* is not a list of non-negative integers/);
    expectBad(fileWith(entry({ shape: [2 ** 30, 2 ** 30, 2 ** 30] }), 4), /tensor "x" shape \[1073741824,1073741824,1073741824\] overflows/);
  });

  it('data_offsets that are malformed or outside the data region', () => {
    for (const data_offsets of [[0], [0, 4, 8], [0, 4.5], [-4, 0], ['0', '4'], 4, null])
      expectBad(fileWith(entry({ data_offsets }), 8), /data_offsets .* are not two non-negative integers/);
    expectBad(fileWith(entry({ data_offsets: [8, 4] }), 8), /data_offsets \[8, 4\] outside the data region \(8 bytes\)/);
    expectBad(fileWith({ x: { dtype: 'F32', shape: [25], data_offsets: [0, 99] } }, 64), /^f\d+\.safetensors: tensor "x" data_offsets \[0, 99\] outside the data region \(64 bytes\)$/);
    expectBad(fileWith(entry({ data_offsets: [2 ** 53 - 8, 2 ** 53 - 4] }), 8), /outside the data region/);
  });

  it('byte length not matching shape × dtype size', () => {
    expectBad(fileWith(entry({ shape: [2] }), 4), /tensor "x" is 4 bytes but shape \[2\] of F32 needs 8/);
    expectBad(fileWith(entry({ dtype: 'F16' }), 4), /is 4 bytes but shape \[1\] of F16 needs 2/);
  });

  it('__metadata__ that does not map strings to strings', () => {
    for (const m of [{ a: 1 }, [], 'x', null, { a: { b: 'c' } }]) expectBad(fileWith({ __metadata__: m }), /__metadata__ must map strings to strings/);
  });

  it('a data region cut short', () => {
    const f = fileWith({ x: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, 16);
    fs.truncateSync(f, fs.statSync(f).size - 8);
    expectBad(f, /data_offsets \[0, 16\] outside the data region \(8 bytes\)/);
  });

  it('a file truncated after opening fails the read, naming the file', () => {
    const f = fileWith({ x: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, 16);
    const st = openSafetensors(f);
    fs.truncateSync(f, fs.statSync(f).size - 8);
    const err = errorOf(() => st.readRaw('x'));
    expect(err).toBeInstanceOf(BadInputError);
    expect(err.message).toMatch(new RegExp(`^${path.basename(f)}: unexpected end of file`));
    st.close();
  });

  it('a missing file or a directory', () => {
    expectBad(path.join(tmp, 'nope.safetensors'), /nope\.safetensors: cannot open \(ENOENT\)/);
    const d = path.join(tmp, 'dir.safetensors');
    fs.mkdirSync(d);
    expectBad(d, /not a regular file/);
  });

  it('other dtypes are listed and readable raw, but not as f32', () => {
    const f = fileWith(
      {
        x: { dtype: 'I64', shape: [1], data_offsets: [0, 8] },
        y: { dtype: 'I8', shape: [3], data_offsets: [8, 11] },
        z: { dtype: 'U8', shape: [1], data_offsets: [11, 12] },
        w: { dtype: 'F64', shape: [], data_offsets: [16, 24] },
      },
      24,
    );
    const st = openSafetensors(f);
    expect(st.names()).toEqual(['x', 'y', 'z', 'w']);
    expect(st.info('x')).toEqual({ name: 'x', dtype: 'I64', shape: [1] });
    expect(st.info('w')).toEqual({ name: 'w', dtype: 'F64', shape: [] });
    expect(st.readRaw('y')).toEqual(new Uint8Array(3));
    for (const name of ['x', 'y', 'z', 'w']) {
      const err = errorOf(() => st.readF32(name));
      expect(err).toBeInstanceOf(BadInputError);
      expect(err.message).toMatch(new RegExp(`tensor "${name}" is [A-Z0-9]+; only F32, F16 and BF16 tensors can be read as f32`));
    }
    expect(errorOf(() => st.readF32('missing')).message).toMatch(/no tensor named "missing"/);
    expect(errorOf(() => st.info('missing'))).toBeInstanceOf(BadInputError);
    st.close();
    st.close(); // idempotent
  });
});

describe('safetensors writer', () => {
  const x = Float32Array.from([1, -2.5, 3.25, 0, 65504, 1e-8]);

  it('round-trips F32, F16 and BF16 bit for bit, with metadata, in a layout a plain parser reads', () => {
    const f = path.join(tmp, 'rt.safetensors');
    const h = f32ToF16(x);
    const b = f32ToBf16(x);
    writeSafetensors(
      f,
      [
        { name: 'a', dtype: 'F32', shape: [2, 3], data: x },
        { name: 'b', dtype: 'F16', shape: [6], data: h },
        { name: 'c', dtype: 'BF16', shape: [3, 2], data: b },
      ],
      { format: 'pt' },
    );
    const st = openSafetensors(f);
    expect(st.names()).toEqual(['a', 'b', 'c']);
    expect(st.metadata()).toEqual({ format: 'pt' });
    expect(st.info('c')).toEqual({ name: 'c', dtype: 'BF16', shape: [3, 2] });
    expect(st.readF32('a')).toEqual(x);
    expect(Array.from(st.readF32('b'))).toEqual([1, -2.5, 3.25, 0, 65504, 0]); // 1e-8 is below half the smallest f16 subnormal
    expect(Array.from(st.readF32('c')).slice(0, 4)).toEqual([1, -2.5, 3.25, 0]);
    expect(st.readRaw('b')).toEqual(new Uint8Array(h.buffer));
    expect(st.readRaw('c')).toEqual(new Uint8Array(b.buffer));

    // Parsed by hand, as any other reader would: header length, space-padded JSON, 8-byte aligned data region.
    const bytes = fs.readFileSync(f);
    const headerLen = Number(bytes.readBigUInt64LE(0));
    expect(headerLen % 8).toBe(0);
    const text = bytes.subarray(8, 8 + headerLen).toString('utf8');
    expect(text).toMatch(/^\{.*\} *$/);
    const header = JSON.parse(text);
    expect(header.a).toEqual({ dtype: 'F32', shape: [2, 3], data_offsets: [0, 24] });
    expect(header.b.data_offsets).toEqual([24, 36]);
    expect(header.c.data_offsets).toEqual([36, 48]);
    expect(bytes.length).toBe(8 + headerLen + 48);
    expect(st.byteRange('b')).toEqual({ offset: 8 + headerLen + 24, length: 12 });
    expect(new Uint8Array(bytes.subarray(8 + headerLen + 24, 8 + headerLen + 36))).toEqual(new Uint8Array(h.buffer));
    st.close();
    expect(fs.readdirSync(tmp).filter((e) => e.includes('.tmp-'))).toEqual([]);
  });

  it('accepts raw bytes and views into larger buffers; writes empty, scalar and oddly named tensors', () => {
    const f = path.join(tmp, 'views.safetensors');
    const big = Float32Array.from([9, 9, 1, 2, 3, 9]);
    writeSafetensors(f, [
      { name: 'view', dtype: 'F32', shape: [3], data: big.subarray(2, 5) },
      { name: 'bytes', dtype: 'F32', shape: [1], data: new Uint8Array(Float32Array.of(7).buffer) },
      { name: 'empty', dtype: 'F16', shape: [0, 4], data: new Uint16Array(0) },
      { name: 'scalar', dtype: 'F32', shape: [], data: Float32Array.of(-1) },
      { name: '__proto__', dtype: 'BF16', shape: [1], data: f32ToBf16(Float32Array.of(2)) },
      { name: 'ünïcode.weight', dtype: 'F32', shape: [1], data: Float32Array.of(5) },
    ]);
    const st = openSafetensors(f);
    expect(st.names()).toEqual(['view', 'bytes', 'empty', 'scalar', '__proto__', 'ünïcode.weight']);
    expect(Array.from(st.readF32('view'))).toEqual([1, 2, 3]);
    expect(Array.from(st.readF32('bytes'))).toEqual([7]);
    expect(st.readF32('empty').length).toBe(0);
    expect(st.info('empty').shape).toEqual([0, 4]);
    expect(Array.from(st.readF32('scalar'))).toEqual([-1]);
    expect(Array.from(st.readF32('__proto__'))).toEqual([2]);
    expect(Array.from(st.readF32('ünïcode.weight'))).toEqual([5]);
    expect(st.metadata()).toEqual({});
    st.close();
  });

  it('calls lazy producers once each, in order, after the previous tensors are on disk', () => {
    const f = path.join(tmp, 'lazy.safetensors');
    const calls: Array<{ name: string; tmpSize: number }> = [];
    const onDisk = () => {
      const t = fs.readdirSync(tmp).find((e) => e.startsWith('.lazy.safetensors.tmp-'));
      return t ? fs.statSync(path.join(tmp, t)).size : -1;
    };
    const produce = (name: string, values: number[]) => () => {
      calls.push({ name, tmpSize: onDisk() });
      return Float32Array.from(values);
    };
    writeSafetensors(f, [
      { name: 'p', dtype: 'F32', shape: [2], data: produce('p', [1, 2]) },
      { name: 'q', dtype: 'F32', shape: [3], data: produce('q', [3, 4, 5]) },
      { name: 'r', dtype: 'F16', shape: [2], data: () => (calls.push({ name: 'r', tmpSize: onDisk() }), f32ToF16(Float32Array.of(6, 7))) },
    ]);
    expect(calls.map((c) => c.name)).toEqual(['p', 'q', 'r']);
    // Each producer runs when everything before it has been written (the file grows by the previous tensor).
    expect(calls[1]!.tmpSize - calls[0]!.tmpSize).toBe(8);
    expect(calls[2]!.tmpSize - calls[1]!.tmpSize).toBe(12);
    const st = openSafetensors(f);
    expect(calls[0]!.tmpSize).toBe(st.byteRange('p').offset);
    expect(Array.from(st.readF32('q'))).toEqual([3, 4, 5]);
    expect(Array.from(st.readF32('r'))).toEqual([6, 7]);
    st.close();
  });

  it('a producer of the wrong size, or one that throws, fails and leaves the previous file intact and no temp file', () => {
    const f = path.join(tmp, 'keep.safetensors');
    writeSafetensors(f, [{ name: 'a', dtype: 'F32', shape: [1], data: Float32Array.of(42) }]);
    const before = fs.readFileSync(f);
    expect(() => writeSafetensors(f, [{ name: 'a', dtype: 'F32', shape: [4], data: () => new Float32Array(3) }])).toThrow(/tensor "a" produced 12 bytes, expected 16/);
    expect(() => writeSafetensors(f, [{ name: 'a', dtype: 'F16', shape: [2], data: () => new Float32Array(2) }])).toThrow(/produced 8 bytes, expected 4/);
    expect(() =>
      writeSafetensors(f, [
        { name: 'a', dtype: 'F32', shape: [1], data: Float32Array.of(1) },
        {
          name: 'b',
          dtype: 'F32',
          shape: [1],
          data: () => {
            throw new Error('producer failed');
          },
        },
      ]),
    ).toThrow(/producer failed/);
    expect(fs.readFileSync(f).equals(before)).toBe(true);
    const fresh = path.join(tmp, 'never.safetensors');
    expect(() => writeSafetensors(fresh, [{ name: 'a', dtype: 'F32', shape: [2], data: new Float32Array(1) }])).toThrow(/expected 8/);
    expect(fs.existsSync(fresh)).toBe(false);
    expect(fs.readdirSync(tmp).filter((e) => e.includes('.tmp-'))).toEqual([]);
  });

  it('rejects duplicate or reserved names and invalid shapes before writing anything', () => {
    const f = path.join(tmp, 'invalid.safetensors');
    const one = (t: Partial<TensorToWrite>): TensorToWrite => ({ name: 'a', dtype: 'F32', shape: [1], data: Float32Array.of(1), ...t });
    expect(() => writeSafetensors(f, [one({}), one({})])).toThrow(/duplicate or reserved tensor name "a"/);
    expect(() => writeSafetensors(f, [one({ name: '__metadata__' })])).toThrow(/reserved/);
    expect(() => writeSafetensors(f, [one({ shape: [-1] })])).toThrow(/invalid shape \[-1\]/);
    expect(() => writeSafetensors(f, [one({ shape: [1.5] })])).toThrow(/invalid shape/);
    expect(() => writeSafetensors(f, [one({ shape: [2 ** 30, 2 ** 30, 2 ** 30] })])).toThrow(/overflows/);
    expect(() => writeSafetensors(f, [one({ dtype: 'I8' as never })])).toThrow(/unsupported dtype "I8"/);
    expect(fs.existsSync(f)).toBe(false);
  });
});

describe('sharded checkpoints', () => {
  /** A directory with one single-tensor shard per file (tensor named after the file, value = its index + 1). */
  function sharded(map: Record<string, unknown>, files: string[], index?: string): string {
    const dir = fs.mkdtempSync(path.join(tmp, 'shards-'));
    files.forEach((name, i) =>
      writeSafetensors(path.join(dir, name), [{ name: name.replace('.safetensors', ''), dtype: 'F32', shape: [1], data: Float32Array.of(i + 1) }]),
    );
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), index ?? JSON.stringify({ metadata: { total_size: 8 }, weight_map: map }));
    return dir;
  }

  it('reads tensors across shards as one source', () => {
    const dir = sharded({ s1: 's1.safetensors', s2: 's2.safetensors' }, ['s1.safetensors', 's2.safetensors']);
    const w = openWeights(dir);
    expect(w.names().sort()).toEqual(['s1', 's2']);
    expect(w.has('s2')).toBe(true);
    expect(w.has('s3')).toBe(false);
    expect(w.readF32('s2')[0]).toBe(2);
    expect(w.readF32('s1')[0]).toBe(1);
    expect(w.readRaw('s2')).toEqual(new Uint8Array(Float32Array.of(2).buffer));
    expect(w.info('s1')).toEqual({ name: 's1', dtype: 'F32', shape: [1] });
    expect(errorOf(() => w.readF32('s3')).message).toMatch(/no tensor named "s3"/);
    w.close();
  });

  it('opens shards lazily: a corrupt shard fails only when one of its tensors is read, naming it', () => {
    const dir = sharded({ s1: 's1.safetensors', s2: 's2.safetensors' }, ['s1.safetensors', 's2.safetensors']);
    fs.writeFileSync(path.join(dir, 's2.safetensors'), Buffer.from([1, 2]));
    const w = openWeights(dir);
    expect(w.readF32('s1')[0]).toBe(1);
    const err = errorOf(() => w.readF32('s2'));
    expect(err).toBeInstanceOf(BadInputError);
    expect(err.message).toMatch(/^s2\.safetensors: file is 2 bytes/);
    w.close();
  });

  it('a tensor the index lists but its shard lacks is named', () => {
    const dir = sharded({ s1: 's1.safetensors', ghost: 's1.safetensors' }, ['s1.safetensors']);
    const w = openWeights(dir);
    expect(errorOf(() => w.readF32('ghost')).message).toMatch(/s1\.safetensors: index lists "ghost" but the shard lacks it/);
    w.close();
  });

  it('a missing shard is named', () => {
    const err = errorOf(() => openWeights(sharded({ s1: 's1.safetensors', s9: 's9.safetensors' }, ['s1.safetensors'])));
    expect(err).toBeInstanceOf(BadInputError);
    expect(err.message).toMatch(/shard "s9\.safetensors" is missing/);
  });

  it.each([['../../etc/passwd'], ['/etc/passwd'], ['sub/s1.safetensors'], ['..'], ['.'], [''], ['a\\b.safetensors'], [42], [null]])(
    'a shard name %j that is not a plain file name in the directory is refused',
    (shard) => {
      const dir = sharded({ s1: shard }, ['s1.safetensors']);
      fs.mkdirSync(path.join(dir, 'sub'));
      fs.copyFileSync(path.join(dir, 's1.safetensors'), path.join(dir, 'sub', 's1.safetensors'));
      const err = errorOf(() => openWeights(dir));
      expect(err).toBeInstanceOf(BadInputError);
      expect(err.message).toMatch(/model\.safetensors\.index\.json: tensor "s1" maps to .*, not a file name in the model directory/);
    },
  );

  it('an index that is not JSON or has no weight_map', () => {
    expect(errorOf(() => openWeights(sharded({}, [], '{'))).message).toMatch(/model\.safetensors\.index\.json: not valid JSON/);
    expect(errorOf(() => openWeights(sharded({}, [], '{"metadata":{}}'))).message).toMatch(/model\.safetensors\.index\.json: no "weight_map" object/);
    expect(errorOf(() => openWeights(sharded({}, [], 'null'))).message).toMatch(/no "weight_map" object/);
    expect(errorOf(() => openWeights(sharded({}, [], '{"weight_map":[]}'))).message).toMatch(/no "weight_map" object/);
  });

  it('a single model.safetensors wins over an index; neither is an error', () => {
    const dir = sharded({ s1: 's1.safetensors' }, ['s1.safetensors']);
    writeSafetensors(path.join(dir, 'model.safetensors'), [{ name: 'single', dtype: 'F32', shape: [1], data: Float32Array.of(3) }]);
    const w = openWeights(dir);
    expect(w.names()).toEqual(['single']);
    w.close();
    const empty = fs.mkdtempSync(path.join(tmp, 'empty-'));
    const err = errorOf(() => openWeights(empty));
    expect(err).toBeInstanceOf(BadInputError);
    expect(err.message).toMatch(/no model\.safetensors or model\.safetensors\.index\.json/);
  });
});
