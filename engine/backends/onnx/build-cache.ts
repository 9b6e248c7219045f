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
import path from 'node:path';
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

export function ensureGraph(model: ModelDir, weights: WeightFormat, io: GraphIo = 'native'): BuiltGraph {
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
  fs.mkdirSync(root, { recursive: true });
  const tmp = fs.mkdtempSync(path.join(root, `.${key}-`));
  try {
    const weightsSource = model.weights();
    let result: GraphBuildResult;
    try {
      result = buildLlamaGraph(model.config, weightsSource, path.join(tmp, 'model.onnx'), { weights, io });
    } finally {
      weightsSource.close();
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
