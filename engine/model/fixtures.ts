/**
 * Fixture models for tests, made on demand (deterministically, seed 0) under fixtures/models/.generated/ and reused.
 * Creation goes through a temporary directory and a rename, so parallel test processes never see a half-made model.
 */
import fs from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../paths.js';
import { makeRandomModel, type RandomModelPreset } from './make-random.js';

export type FixtureModel = Extract<RandomModelPreset, 'tiny' | 'tiny-llama' | 'qwen-vocab'>;

export function ensureFixtureModel(name: FixtureModel): string {
  const root = path.join(packageRoot(), 'fixtures', 'models', '.generated');
  const dir = path.join(root, name);
  if (fs.existsSync(path.join(dir, 'model.safetensors'))) return dir;
  fs.mkdirSync(root, { recursive: true });
  const tmp = fs.mkdtempSync(path.join(root, `.${name}-`));
  try {
    makeRandomModel({ like: name, out: tmp, seed: 0 });
    fs.renameSync(tmp, dir);
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    if (!fs.existsSync(path.join(dir, 'model.safetensors'))) throw e; // else another process won the race
  }
  return dir;
}
