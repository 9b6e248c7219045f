/**
 * The safetensors reader trusts nothing: every hostile or corrupt header is a one-line BadInputError naming the file
 * and the problem, never a crash or a huge allocation. The writer round-trips all three dtypes and streams.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BadInputError } from '../engine/errors.js';
import { f32ToBf16, f32ToF16 } from '../engine/model/fp16.js';
import { openSafetensors, writeSafetensors } from '../engine/model/safetensors.js';
import { openWeights } from '../engine/model/weights.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mgd-st-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
let n = 0;

/** A file with the given header object (or raw header bytes) and `data` bytes after it. */
function fileWith(header: unknown, dataBytes = 0, lengthOverride?: bigint): string {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lengthOverride ?? BigInt(json.length));
  const f = path.join(tmp, `f${n++}.safetensors`);
  fs.writeFileSync(f, Buffer.concat([len, json, Buffer.alloc(dataBytes)]));
  return f;
}

function expectBad(f: string, message: RegExp): void {
  let err: unknown;
  try {
    openSafetensors(f).readF32('x');
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(BadInputError);
  const msg = (err as Error).message;
  expect(msg).toMatch(message);
  expect(msg).not.toContain('\n');
  expect(msg).toMatch(/\.safetensors/);
}

describe('safetensors reader: hostile and corrupt files', () => {
  it('too short for a header', () => {
    const f = path.join(tmp, 'short.safetensors');
    fs.writeFileSync(f, Buffer.from([1, 2, 3]));
    expectBad(f, /too short/);
  });
  it('header length beyond the file, or absurdly large, allocates nothing', () => {
    expectBad(fileWith({}, 0, 1000n), /header length 1000 exceeds the file/);
    expectBad(fileWith({}, 0, 1n << 62n), /exceeds the file/);
  });
  it('header not UTF-8 JSON, or not an object', () => {
    expectBad(fileWith('{"x": '), /not valid UTF-8 JSON/);
    expectBad(fileWith('[1,2]'), /not a JSON object/);
    const bad = Buffer.from([0x7b, 0xff, 0xfe, 0x7d]);
    expectBad(fileWith(bad.toString('latin1')), /not valid UTF-8 JSON|not a JSON object/);
  });
  it('entries with bad dtype, shape or offsets', () => {
    expectBad(fileWith({ x: { dtype: 'F99', shape: [1], data_offsets: [0, 4] } }, 4), /unknown dtype "F99"/);
    expectBad(fileWith({ x: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, 4), /not a list of non-negative integers/);
    expectBad(fileWith({ x: { dtype: 'F32', shape: [1.5], data_offsets: [0, 4] } }, 4), /non-negative integers/);
    expectBad(fileWith({ x: { dtype: 'F32', shape: [1], data_offsets: [0] } }, 4), /not two non-negative integers/);
    expectBad(fileWith({ x: { dtype: 'F32', shape: [1], data_offsets: [8, 4] } }, 8), /outside the data region/);
    expectBad(fileWith({ x: { dtype: 'F32', shape: [25], data_offsets: [0, 100] } }, 64), /\[0, 100\] outside the data region \(64 bytes\)/);
    expectBad(fileWith({ x: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }, 4), /is 4 bytes but shape \[2\] of F32 needs 8/);
    expectBad(fileWith({ x: { dtype: 'F32', shape: [2 ** 30, 2 ** 30, 2 ** 30], data_offsets: [0, 4] } }, 4), /overflows/);
    expectBad(fileWith({ x: 5 }), /entry is not an object/);
    expectBad(fileWith({ __metadata__: { a: 1 } }), /__metadata__ must map strings to strings/);
  });
  it('truncated data region', () => {
    const f = fileWith({ x: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, 16);
    fs.truncateSync(f, fs.statSync(f).size - 8);
    expectBad(f, /outside the data region/);
  });
  it('other dtypes list but do not read as f32', () => {
    const f = fileWith({ x: { dtype: 'I64', shape: [1], data_offsets: [0, 8] } }, 8);
    const st = openSafetensors(f);
    expect(st.info('x')).toEqual({ name: 'x', dtype: 'I64', shape: [1] });
    expect(() => st.readF32('x')).toThrow(/only F32, F16 and BF16/);
    expect(() => st.readF32('missing')).toThrow(/no tensor named "missing"/);
    st.close();
  });
  it('a missing file', () => {
    expect(() => openSafetensors(path.join(tmp, 'nope.safetensors'))).toThrow(/cannot open \(ENOENT\)/);
  });
});

describe('safetensors writer', () => {
  it('round-trips F32, F16 and BF16, lazily produced, with metadata', () => {
    const x = Float32Array.from([1, -2.5, 3.25, 0, 65504, 1e-8]);
    const f = path.join(tmp, 'rt.safetensors');
    let produced = 0;
    writeSafetensors(
      f,
      [
        { name: 'a', dtype: 'F32', shape: [2, 3], data: x },
        { name: 'b', dtype: 'F16', shape: [6], data: () => (produced++, f32ToF16(x)) },
        { name: 'c', dtype: 'BF16', shape: [3, 2], data: () => (produced++, f32ToBf16(x)) },
      ],
      { format: 'pt' },
    );
    expect(produced).toBe(2);
    const st = openSafetensors(f);
    expect(st.names()).toEqual(['a', 'b', 'c']);
    expect(st.metadata()).toEqual({ format: 'pt' });
    expect(Array.from(st.readF32('a'))).toEqual(Array.from(x));
    expect(Array.from(st.readF32('b')).slice(0, 5)).toEqual([1, -2.5, 3.25, 0, 65504]);
    expect(st.readF32('c')[1]).toBe(-2.5);
    // the data region starts 8-byte aligned
    expect(fs.readFileSync(f).readUInt32LE(0) % 8).toBe(0);
    st.close();
    expect(fs.readdirSync(tmp).filter((e) => e.includes('.tmp-'))).toEqual([]);
  });
  it('a producer of the wrong size fails and leaves no file behind', () => {
    const f = path.join(tmp, 'wrong.safetensors');
    expect(() => writeSafetensors(f, [{ name: 'a', dtype: 'F32', shape: [4], data: () => new Float32Array(3) }])).toThrow(/produced 12 bytes, expected 16/);
    expect(fs.existsSync(f)).toBe(false);
  });
});

describe('sharded checkpoints', () => {
  function sharded(map: Record<string, string>, files: string[]): string {
    const dir = fs.mkdtempSync(path.join(tmp, 'shards-'));
    for (const name of files) writeSafetensors(path.join(dir, name), [{ name: name.replace('.safetensors', ''), dtype: 'F32', shape: [1], data: Float32Array.of(files.indexOf(name) + 1) }]);
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: map }));
    return dir;
  }
  it('reads tensors across shards', () => {
    const dir = sharded({ s1: 's1.safetensors', s2: 's2.safetensors' }, ['s1.safetensors', 's2.safetensors']);
    const w = openWeights(dir);
    expect(w.names().sort()).toEqual(['s1', 's2']);
    expect(w.readF32('s2')[0]).toBe(2);
    expect(w.info('s1').shape).toEqual([1]);
    w.close();
  });
  it('a missing shard, or a path outside the directory, is named', () => {
    expect(() => openWeights(sharded({ s1: 's1.safetensors', s9: 's9.safetensors' }, ['s1.safetensors']))).toThrow(/shard s9\.safetensors is missing/);
    expect(() => openWeights(sharded({ s1: '../../etc/passwd' }, ['s1.safetensors']))).toThrow(/not a file name in the model directory/);
  });
});
