/**
 * One WeightSource over a checkpoint: `model.safetensors`, or the shards named by `model.safetensors.index.json`
 * (weight_map: tensor name -> shard file). Shards are checked to exist up front but opened lazily, on the first
 * read that needs them, so listing names or reading one layer never parses every shard's header.
 */
import fs from 'node:fs';
import path from 'node:path';
import { BadInputError } from '../errors.js';
import { openSafetensors, type SafetensorsFile } from './safetensors.js';
import type { TensorInfo, WeightSource } from './tensor-types.js';

export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';

export function openWeights(dir: string): WeightSource {
  if (fs.existsSync(path.join(dir, SINGLE_FILE))) return openSafetensors(path.join(dir, SINGLE_FILE));
  if (fs.existsSync(path.join(dir, INDEX_FILE))) return new ShardedWeights(dir, readIndex(dir));
  throw new BadInputError(`${dir}: no ${SINGLE_FILE} or ${INDEX_FILE}`);
}

/**
 * The safetensors files holding the checkpoint, relative to `dir`: [model.safetensors], or the index's shards
 * (validated, each checked to exist). Empty when the directory has neither. For fingerprints and up-front checks.
 */
export function weightFiles(dir: string): string[] {
  if (fs.existsSync(path.join(dir, SINGLE_FILE))) return [SINGLE_FILE];
  if (!fs.existsSync(path.join(dir, INDEX_FILE))) return [];
  const shards = [...new Set(Object.values(readIndex(dir)))];
  checkShardsExist(dir, shards);
  return shards;
}

/** Reads and validates the index's weight_map. */
function readIndex(dir: string): Record<string, string> {
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(path.join(dir, INDEX_FILE), 'utf8'));
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code ?? (e instanceof Error ? e.message : String(e));
    throw new BadInputError(`${INDEX_FILE}: ${e instanceof SyntaxError ? 'not valid JSON' : 'unreadable'} (${why})`);
  }
  const map = typeof raw === 'object' && raw !== null ? (raw as { weight_map?: unknown }).weight_map : undefined;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) throw new BadInputError(`${INDEX_FILE}: no "weight_map" object`);
  for (const [name, shard] of Object.entries(map)) {
    // Shards are plain file names beside the index: anything with a path could make us read any file on the
    // machine. (Symlinks inside the directory are fine: the Hugging Face cache is made of them.)
    if (typeof shard !== 'string' || !isPlainFileName(shard))
      throw new BadInputError(`${INDEX_FILE}: tensor ${JSON.stringify(name)} maps to ${JSON.stringify(shard)}, not a file name in the model directory`);
  }
  return map as Record<string, string>;
}

function isPlainFileName(s: string): boolean {
  return s !== '' && s !== '.' && s !== '..' && !/[/\\\0]/.test(s) && s === path.basename(s);
}

function checkShardsExist(dir: string, shards: Iterable<string>): void {
  for (const shard of shards) if (!fs.existsSync(path.join(dir, shard))) throw new BadInputError(`${INDEX_FILE}: shard ${JSON.stringify(shard)} is missing`);
}

class ShardedWeights implements WeightSource {
  private readonly open = new Map<string, SafetensorsFile>();

  constructor(
    private readonly dir: string,
    private readonly map: Record<string, string>,
  ) {
    checkShardsExist(dir, new Set(Object.values(map)));
  }

  private shard(name: string): SafetensorsFile {
    if (!Object.hasOwn(this.map, name)) throw new BadInputError(`${INDEX_FILE}: no tensor named ${JSON.stringify(name)}`);
    const file = this.map[name]!;
    let s = this.open.get(file);
    if (!s) {
      s = openSafetensors(path.join(this.dir, file));
      this.open.set(file, s);
    }
    if (!s.has(name)) throw new BadInputError(`${file}: index lists ${JSON.stringify(name)} but the shard lacks it`);
    return s;
  }

  has(name: string): boolean {
    return Object.hasOwn(this.map, name);
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
