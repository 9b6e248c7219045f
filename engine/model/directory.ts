/**
 * A model directory in Hugging Face layout: config.json, tokenizer.json (+ tokenizer_config.json,
 * generation_config.json when present) and weights, either safetensors (single or sharded) or a transformers.js /
 * Optimum ONNX export under onnx/. Opening one validates what every later step relies on and says in one line what
 * is missing.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { BadInputError } from '../errors.js';
import { parseConfig, type ModelConfig } from './config.js';
import type { WeightSource } from './tensor-types.js';
import { INDEX_FILE, openWeights, shardFiles, SINGLE_FILE } from './weights.js';

export interface ModelDir {
  /** Absolute path. */
  dir: string;
  config: ModelConfig;
  layout: 'safetensors' | 'onnx';
  /** The ONNX file for the 'onnx' layout. */
  onnxFile: string | null;
  tokenizerFile: string;
  tokenizerConfig: Record<string, unknown> | null;
  generation: { eosTokenIds: number[]; bosTokenId: number | null };
  /** Opens the safetensors weights (BadInputError for the onnx layout). The caller closes them. */
  weights(): WeightSource;
  /** Stable hash of config.json and each weight file's name, size and mtime: a key for derived artefacts. */
  fingerprint(): string;
}

const ONNX_CANDIDATES = ['onnx/model.onnx', 'onnx/decoder_model_merged.onnx'];

export function openModelDir(dirArg: string): ModelDir {
  const dir = path.resolve(dirArg);
  let stat: fs.Stats;
  try {
    stat = fs.statSync(dir);
  } catch {
    throw new BadInputError(`model directory ${dirArg} does not exist`);
  }
  if (!stat.isDirectory()) throw new BadInputError(`model directory ${dirArg} is not a directory`);

  const configText = readText(dir, 'config.json', true)!;
  const config = parseConfig(parseJson(configText, 'config.json'));
  const tokenizerFile = path.join(dir, 'tokenizer.json');
  if (!fs.existsSync(tokenizerFile)) throw new BadInputError(`${dirArg}: tokenizer.json is missing`);
  const tokCfgText = readText(dir, 'tokenizer_config.json', false);
  const tokenizerConfig = tokCfgText === null ? null : (parseJson(tokCfgText, 'tokenizer_config.json') as Record<string, unknown>);
  const genText = readText(dir, 'generation_config.json', false);
  const gen = genText === null ? {} : (parseJson(genText, 'generation_config.json') as Record<string, unknown>);

  const hasSafetensors = fs.existsSync(path.join(dir, SINGLE_FILE)) || fs.existsSync(path.join(dir, INDEX_FILE));
  const onnxRel = ONNX_CANDIDATES.find((f) => fs.existsSync(path.join(dir, f))) ?? null;
  if (!hasSafetensors && !onnxRel) throw new BadInputError(`${dirArg}: no weights (${SINGLE_FILE}, ${INDEX_FILE} or ${ONNX_CANDIDATES.join(' / ')})`);
  const layout = hasSafetensors ? 'safetensors' : 'onnx';
  const weightFiles = layout === 'onnx' ? [onnxRel!] : fs.existsSync(path.join(dir, SINGLE_FILE)) ? [SINGLE_FILE] : shardFiles(dir);

  const eos = ids(gen.eos_token_id);
  return {
    dir,
    config,
    layout,
    onnxFile: layout === 'onnx' ? path.join(dir, onnxRel!) : null,
    tokenizerFile,
    tokenizerConfig,
    generation: {
      eosTokenIds: eos.length ? eos : config.eosTokenIds,
      bosTokenId: typeof gen.bos_token_id === 'number' ? gen.bos_token_id : config.bosTokenId,
    },
    weights() {
      if (layout !== 'safetensors') throw new BadInputError(`${dirArg}: has ONNX weights only, no safetensors`);
      return openWeights(dir);
    },
    fingerprint() {
      const h = crypto.createHash('sha256').update(configText);
      for (const f of weightFiles) {
        const s = fs.statSync(path.join(dir, f));
        h.update(`\0${f}\0${s.size}\0${s.mtimeMs}`);
      }
      return h.digest('hex');
    },
  };
}

function readText(dir: string, name: string, required: boolean): string | null {
  const file = path.join(dir, name);
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && !required) return null;
    throw new BadInputError(`${path.basename(dir)}/${name}: ${code === 'ENOENT' ? 'missing' : `unreadable (${code ?? String(e)})`}`);
  }
}

function parseJson(text: string, name: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new BadInputError(`${name}: invalid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
}

function ids(v: unknown): number[] {
  if (typeof v === 'number') return [v];
  return Array.isArray(v) ? v.filter((x): x is number => typeof x === 'number') : [];
}
