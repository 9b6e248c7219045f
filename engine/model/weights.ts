/**
 * One WeightSource over a checkpoint: `model.safetensors`, or the shards named by `model.safetensors.index.json`
 * (weight_map: tensor name -> shard file). Shards open lazily, on the first read that needs them.
 */
import fs from 'node:fs';
import path from 'node:path';
import { BadInputError } from '../errors.js';
import { openSafetensors, type SafetensorsFile } from './safetensors.js';
import type { TensorInfo, WeightSource } from './tensor-types.js';

export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';

export function openWeights(dir: string): WeightSource {
  const index = path.join(dir, INDEX_FILE);
  if (fs.existsSync(path.join(dir, SINGLE_FILE))) return openSafetensors(path.join(dir, SINGLE_FILE));
  if (fs.existsSync(index)) return new ShardedWeights(dir, readIndex(index));
  throw new BadInputError(`${dir}: no ${SINGLE_FILE} or ${INDEX_FILE}`);
}

/** The shard files an index names (validated), for fingerprints and checks. */
export function shardFiles(dir: string): string[] {
  return [...new Set(Object.values(readIndex(path.join(dir, INDEX_FILE))))];
}

function readIndex(file: string): Record<string, string> {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new BadInputError(`${INDEX_FILE}: unreadable or not JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  const map = (raw as { weight_map?: unknown } | null)?.weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) throw new BadInputError(`${INDEX_FILE}: no "weight_map" object`);
  for (const [name, shard] of Object.entries(map)) {
    // Shards are plain file names beside the index: a path could read any file on the machine.
    if (typeof shard !== 'string' || shard !== path.basename(shard) || shard === '.' || shard === '..' || shard === '')
      throw new BadInputError(`${INDEX_FILE}: tensor "${name}" maps to ${JSON.stringify(shard)}, not a file name in the model directory`);
  }
  return map as Record<string, string>;
}

class ShardedWeights implements WeightSource {
  private readonly open = new Map<string, SafetensorsFile>();

  constructor(
    private readonly dir: string,
    private readonly map: Record<string, string>,
  ) {
    for (const shard of new Set(Object.values(map)))
      if (!fs.existsSync(path.join(dir, shard))) throw new BadInputError(`${INDEX_FILE}: shard ${shard} is missing`);
  }

  private shard(name: string): SafetensorsFile {
    const file = this.map[name];
    if (file === undefined) throw new BadInputError(`${INDEX_FILE}: no tensor named "${name}"`);
    let s = this.open.get(file);
    if (!s) {
      s = openSafetensors(path.join(this.dir, file));
      this.open.set(file, s);
    }
    if (!s.has(name)) throw new BadInputError(`${file}: index lists "${name}" but the shard lacks it`);
    return s;
  }

  has(name: string): boolean {
    return name in this.map;
  }
  names(): string[] {
    return Object.keys(this.map);
  }
  info(name: string): TensorInfo {
    return this.shard(name).info(name);
  }
  readF32(name: string): Float32Array {
    return this.shard(name).readF32(name);
  }
  readRaw(name: string): Uint8Array {
    return this.shard(name).readRaw(name);
  }
  close(): void {
    for (const s of this.open.values()) s.close();
    this.open.clear();
  }
}
