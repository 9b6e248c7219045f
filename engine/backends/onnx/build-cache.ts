/**
 * Where built ONNX graphs live between runs.
 *
 * Building a graph means reading every weight, widening or quantizing it and writing ~model-sized external data: seconds
 * for a 0.5B model, so it is done once per (model files, weight format, builder version) and reused. The key is the
 * model directory's fingerprint (config + each weight file's name, size and mtime); a changed checkpoint gets a new
 * entry. Entries are built in a temporary directory and renamed into place, so a crash or a concurrent build never
 * leaves a half-written model under a valid key.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BadInputError, isDiskFault } from '../../errors.js';
import type { ModelDir } from '../../model/directory.js';
import { cacheRoot } from '../../paths.js';
import type { WeightFormat } from '../backend.js';
import { buildLlamaGraph, type GraphBuildResult, type GraphIo } from './llama-graph.js';

/** Bump when the graph's structure or I/O changes: old cache entries then stop matching. */
const BUILDER_VERSION = 4;

export interface BuiltGraph extends GraphBuildResult {
  modelPath: string;
  /** True when this call built it; false when it came from the cache. */
  built: boolean;
}

export { cacheRoot };

export function ensureGraph(model: ModelDir, weights: WeightFormat, io: GraphIo = 'native', warn: (message: string) => void = () => {}): BuiltGraph {
  const key = crypto.createHash('sha256').update(JSON.stringify([BUILDER_VERSION, model.fingerprint(), weights, io])).digest('hex').slice(0, 24);
  const root = path.join(cacheRoot(), 'onnx');
  const dir = path.join(root, key);
  const meta = path.join(dir, 'meta.json');
  if (fs.existsSync(meta)) {
    try {
      const m = JSON.parse(fs.readFileSync(meta, 'utf8')) as GraphBuildResult;
      return { ...m, modelPath: path.join(dir, 'model.onnx'), built: false };
    } catch {
      fs.rmSync(dir, { recursive: true, force: true }); // unreadable entry: rebuild it
    }
  }
  let tmp: string;
  try {
    fs.mkdirSync(root, { recursive: true });
    tmp = fs.mkdtempSync(path.join(root, `.${key}-`));
  } catch (e) {
    if (!isDiskFault(e)) throw e;
    return buildPrivately(model, weights, io, root, e, warn);
  }
  try {
    let result: GraphBuildResult;
    try {
      result = build(model, weights, io, tmp);
    } catch (e) {
      if (!isDiskFault(e)) throw e;
      fs.rmSync(tmp, { recursive: true, force: true });
      return buildPrivately(model, weights, io, root, e, warn);
    }
    fs.writeFileSync(path.join(tmp, 'meta.json'), JSON.stringify(result));
    try {
      fs.renameSync(tmp, dir);
    } catch (e) {
      // Another process finished the same build first: use its copy.
      if (!fs.existsSync(meta)) throw e;
      fs.rmSync(tmp, { recursive: true, force: true });
    }
    return { ...result, modelPath: path.join(dir, 'model.onnx'), built: true };
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}

function build(model: ModelDir, weights: WeightFormat, io: GraphIo, dir: string): GraphBuildResult {
  const weightsSource = model.weights();
  try {
    return buildLlamaGraph(model.config, weightsSource, path.join(dir, 'model.onnx'), { weights, io });
  } finally {
    weightsSource.close();
  }
}

/**
 * The cache cannot take the graph (a full or read-only disk): build it in a private temporary directory for this
 * process instead, removed when it exits; the model still loads, only the next start builds again. Where that
 * cannot be written either, one line says where and why.
 */
function buildPrivately(model: ModelDir, weights: WeightFormat, io: GraphIo, root: string, cause: unknown, warn: (message: string) => void): BuiltGraph {
  const why = (e: unknown) => (e as NodeJS.ErrnoException).code ?? (e as Error).message;
  let dir: string | null = null;
  try {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mgd-graph-'));
    process.once('exit', () => fs.rmSync(dir!, { recursive: true, force: true }));
    const result = build(model, weights, io, dir);
    warn(`the ONNX graph cache ${root} cannot be written (${why(cause)}): built in ${dir} for this run only`);
    return { ...result, modelPath: path.join(dir, 'model.onnx'), built: true };
  } catch (e) {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    if (!isDiskFault(e)) throw e;
    throw new BadInputError(`cannot write the ONNX graph for ${model.dir}: ${why(cause)} in ${root}, ${why(e)} in ${os.tmpdir()}; free some space or set MGD_CACHE_DIR`);
  }
}
