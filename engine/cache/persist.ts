/**
 * The prefix cache on disk, so a restart reloads hot context instead of recomputing it.
 *
 * Blocks are stored as int8 with one float scale per (block, layer, key|value, KV head) row group: a quarter of the
 * f32 size, and a relative error around 0.4% of each group's largest value, which moves logits far less than the
 * difference between two prompts. A file belongs to one model (its fingerprint and weight format) and one cache
 * geometry; any mismatch, or a damaged file, is rejected with a reason and nothing is loaded. Stale content cannot be
 * served: blocks are keyed by the token ids they were computed from, so a changed file simply misses.
 *
 * Layout: "MGDKV1\n", u32 header length, header JSON, then per block: f32 scales[groups], i8 values[floats].
 * Written to a temporary name and renamed, so a crash or a full disk never leaves a half file under the real name.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { PrefixCache } from './prefix-cache.js';

const MAGIC = 'MGDKV1\n';

export interface PersistIdentity {
  /** The model's fingerprint and weight format: KV depends on both. */
  model: string;
  floatsPerToken: number;
  blockTokens: number;
  /** Scale groups per block: 2 * layers * kvHeads (each group is blockTokens * headDim values). */
  groups: number;
}

interface Header extends PersistIdentity {
  blocks: { parent: number; tokens: number[] }[];
}

/** Writes the hottest `maxBytes` (int8) of the cache to `file`. Returns the blocks written. */
export function saveCache(cache: PrefixCache, identity: PersistIdentity, file: string, maxBytes: number): number {
  const blockFloats = identity.floatsPerToken * identity.blockTokens;
  const perBlock = identity.groups * 4 + blockFloats;
  const entries = cache.snapshot(Math.max(0, Math.floor(maxBytes / perBlock)));
  const header: Header = { ...identity, blocks: entries.map((e) => ({ parent: e.parent, tokens: [...e.tokens] })) };
  const json = Buffer.from(JSON.stringify(header));
  const body = Buffer.alloc(entries.length * perBlock);
  const groupLen = blockFloats / identity.groups;
  const view = new DataView(body.buffer, body.byteOffset, body.length);
  const i8 = new Int8Array(body.buffer, body.byteOffset, body.length);
  entries.forEach((e, b) => {
    const base = b * perBlock;
    for (let g = 0; g < identity.groups; g++) {
      const row = e.data.subarray(g * groupLen, (g + 1) * groupLen);
      let max = 0;
      for (const v of row) max = Math.max(max, Math.abs(v));
      const scale = max / 127 || 1;
      view.setFloat32(base + g * 4, scale, true);
      const q = base + identity.groups * 4 + g * groupLen;
      for (let i = 0; i < groupLen; i++) i8[q + i] = Math.round(row[i]! / scale); // |row/scale| <= 127 by construction
    }
  });
  const len = Buffer.alloc(4);
  len.writeUInt32LE(json.length);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    fs.writeFileSync(tmp, Buffer.concat([Buffer.from(MAGIC), len, json, body]));
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  return entries.length;
}

/**
 * Loads `file` into `cache` if it was written for `identity`. Returns the blocks restored, or a reason it was
 * rejected (no file is not a rejection: 0 blocks).
 */
export function loadCache(cache: PrefixCache, identity: PersistIdentity, file: string): { blocks: number } | { rejected: string } {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { blocks: 0 };
    return { rejected: `cannot read: ${(e as Error).message}` };
  }
  if (buf.length < MAGIC.length + 4 || buf.toString('latin1', 0, MAGIC.length) !== MAGIC) return { rejected: 'not an mgd KV cache file' };
  const jsonLen = buf.readUInt32LE(MAGIC.length);
  const bodyAt = MAGIC.length + 4 + jsonLen;
  if (bodyAt > buf.length) return { rejected: 'truncated header' };
  let header: Header;
  try {
    header = JSON.parse(buf.toString('utf8', MAGIC.length + 4, bodyAt)) as Header;
  } catch {
    return { rejected: 'damaged header' };
  }
  for (const k of ['model', 'floatsPerToken', 'blockTokens', 'groups'] as const) {
    if (header[k] !== identity[k]) return { rejected: `written for a different ${k === 'model' ? 'model or weight format' : k} (${header[k]} != ${identity[k]})` };
  }
  const blockFloats = identity.floatsPerToken * identity.blockTokens;
  const perBlock = identity.groups * 4 + blockFloats;
  if (!Array.isArray(header.blocks) || bodyAt + header.blocks.length * perBlock !== buf.length) return { rejected: 'size does not match its header' };
  const groupLen = blockFloats / identity.groups;
  const view = new DataView(buf.buffer, buf.byteOffset, buf.length);
  const i8 = new Int8Array(buf.buffer, buf.byteOffset, buf.length);
  const entries = header.blocks.map((b, i) => {
    const base = bodyAt + i * perBlock;
    const data = new Float32Array(blockFloats);
    for (let g = 0; g < identity.groups; g++) {
      const scale = view.getFloat32(base + g * 4, true);
      const q = base + identity.groups * 4 + g * groupLen;
      for (let j = 0; j < groupLen; j++) data[g * groupLen + j] = i8[q + j]! * scale;
    }
    return { parent: b.parent, tokens: b.tokens, data };
  });
  return { blocks: cache.restore(entries) };
}
