/**
 * A model directory in Hugging Face layout: config.json, tokenizer.json (+ tokenizer_config.json,
 * generation_config.json when present) and weights, either safetensors (single or sharded) or a transformers.js /
 * Optimum ONNX export under onnx/. Opening one validates what every later step relies on and says in one line what
 * is missing, so a bad directory fails at open rather than minutes into a graph build.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { BadInputError } from '../errors.js';
import { parseConfig, type ModelConfig } from './config.js';
import type { WeightSource } from './tensor-types.js';
import type { FimOrder } from '../decode/fim.js';
import { INDEX_FILE, openWeights, SINGLE_FILE, weightFiles } from './weights.js';
import { resolveModelArg } from './hub.js';
import { openGgufModel } from './gguf-model.js';
import { isGgufFile } from './gguf-read.js';

export interface ModelDir {
  /** Absolute path: the model directory, or the GGUF file. */
  dir: string;
  config: ModelConfig;
  /**
   * 'safetensors' whenever safetensors weights exist, even beside an ONNX export; 'gguf' for a GGUF file. Both have
   * weights() and we build our own graph from them; 'onnx' is a ready-made graph only.
   */
  layout: 'safetensors' | 'gguf' | 'onnx';
  /** The ONNX file (absolute) for the 'onnx' layout; null for the others. */
  onnxFile: string | null;
  /** Absolute path of tokenizer.json. */
  tokenizerFile: string;
  tokenizerConfig: Record<string, unknown> | null;
  /**
   * From generation_config.json where it says, else from config.json. promptMode: 'fim' unless the model
   * declares `"mgd_prompt": "prefix"` (a model too weak at fill-in-the-middle to be prompted that way); fimOrder
   * 'spm' where it declares `"mgd_prompt": "fim-spm"`, 'spm-joined' where `"fim-spm-joined"` (suffix first, the
   * middle continuing the prefix: see decode/fim.ts).
   */
  generation: { eosTokenIds: number[]; bosTokenId: number | null; promptMode: 'fim' | 'prefix'; fimOrder: FimOrder };
  /** Opens the weights (BadInputError for the onnx layout). The caller closes them. */
  weights(): WeightSource;
  /** Stable hash of config.json and each weight file's name, size and mtime: a key for derived artefacts. */
  fingerprint(): string;
}

/** Where transformers.js / Optimum exports put the decoder, in order of preference. */
const ONNX_CANDIDATES = ['onnx/model.onnx', 'onnx/decoder_model_merged.onnx'];

/** `dirArg`: a directory, a Hugging Face id found in the Hugging Face cache (hub.ts), or a GGUF file (gguf-model.ts). */
export function openModelDir(dirArg: string): ModelDir {
  const dir = path.resolve(resolveModelArg(dirArg));
  let stat: fs.Stats;
  try {
    stat = fs.statSync(dir);
  } catch {
    throw new BadInputError(`model directory ${dirArg} does not exist`);
  }
  if (stat.isFile()) {
    if (isGgufFile(dir)) return openGgufModel(dir);
    throw new BadInputError(`model ${dirArg} is a file but not a GGUF file (a model is a Hugging Face directory, an id, or a .gguf)`);
  }
  if (!stat.isDirectory()) throw new BadInputError(`model directory ${dirArg} is not a directory`);
  try {
    fs.accessSync(dir, fs.constants.R_OK | fs.constants.X_OK);
  } catch {
    throw new BadInputError(`model directory ${dirArg} is not readable`);
  }

  const { configText, ...described } = readModelFiles(dir, dirArg);
  // Validates the index and checks every shard exists, so a broken checkpoint fails here, not in a later build.
  const safetensors = weightFiles(dir);
  const onnxRel = ONNX_CANDIDATES.find((f) => isFile(path.join(dir, f))) ?? null;
  if (!safetensors.length && !onnxRel) throw new BadInputError(`${dirArg}: no weights (${SINGLE_FILE}, ${INDEX_FILE}, ${ONNX_CANDIDATES.join(' or ')})`);
  const layout = safetensors.length ? 'safetensors' : 'onnx';
  const fingerprinted = layout === 'safetensors' ? safetensors : [onnxRel!, ...externalData(dir, onnxRel!)];

  return {
    dir,
    ...described,
    layout,
    onnxFile: layout === 'onnx' ? path.join(dir, onnxRel!) : null,
    weights() {
      if (layout !== 'safetensors') throw new BadInputError(`${dirArg}: has ONNX weights only, no safetensors`);
      return openWeights(dir);
    },
    fingerprint() {
      // The config text as read at open (what `config` was parsed from); weight files as they are now, so a
      // checkpoint replaced in place gets a new key.
      const h = crypto.createHash('sha256').update(configText);
      for (const f of fingerprinted) {
        let s: fs.Stats;
        try {
          s = fs.statSync(path.join(dir, f));
        } catch (e) {
          throw new BadInputError(`${dirArg}: weight file ${f} disappeared (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
        }
        h.update(`\0${f}\0${s.size}\0${s.mtimeMs}`);
      }
      return h.digest('hex');
    },
  };
}

/** What a model directory says besides its weights: config, tokenizer and generation settings, validated. */
export function readModelFiles(dir: string, dirArg: string): Pick<ModelDir, 'config' | 'tokenizerFile' | 'tokenizerConfig' | 'generation'> & { configText: string } {
  const configText = readText(dir, dirArg, 'config.json', true)!;
  const config = parseConfig(parseJson(configText, 'config.json'));
  const tokenizerFile = path.join(dir, 'tokenizer.json');
  if (!isFile(tokenizerFile)) throw new BadInputError(`${dirArg}: tokenizer.json is missing`);
  const tokCfgText = readText(dir, dirArg, 'tokenizer_config.json', false);
  const tokenizerConfig = tokCfgText === null ? null : parseObject(tokCfgText, 'tokenizer_config.json');
  const genText = readText(dir, dirArg, 'generation_config.json', false);
  const gen = genText === null ? {} : parseObject(genText, 'generation_config.json');
  const eos = ids(gen.eos_token_id);
  return {
    configText,
    config,
    tokenizerFile,
    tokenizerConfig,
    generation: {
      eosTokenIds: eos.length ? eos : config.eosTokenIds,
      bosTokenId: typeof gen.bos_token_id === 'number' ? gen.bos_token_id : config.bosTokenId,
      promptMode: gen.mgd_prompt === 'prefix' ? 'prefix' : 'fim',
      fimOrder: gen.mgd_prompt === 'fim-spm' ? 'spm' : gen.mgd_prompt === 'fim-spm-joined' ? 'spm-joined' : 'psm',
    },
  };
}

function isFile(file: string): boolean {
  try {
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/** An ONNX file's external-data siblings (model.onnx_data, model.onnx.data, model.onnx_data_1, ...): weights too. */
function externalData(dir: string, onnxRel: string): string[] {
  const sub = path.dirname(onnxRel);
  const base = path.basename(onnxRel);
  return fs
    .readdirSync(path.join(dir, sub))
    .filter((f) => f.startsWith(base) && /^[._]data/.test(f.slice(base.length)))
    .sort()
    .map((f) => path.join(sub, f));
}

function readText(dir: string, dirArg: string, name: string, required: boolean): string | null {
  try {
    return fs.readFileSync(path.join(dir, name), 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && !required) return null;
    throw new BadInputError(`${dirArg}: ${name} ${code === 'ENOENT' ? 'is missing' : `is unreadable (${code ?? String(e)})`}`);
  }
}

function parseJson(text: string, name: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new BadInputError(`${name}: invalid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
}

function parseObject(text: string, name: string): Record<string, unknown> {
  const v = parseJson(text, name);
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new BadInputError(`${name}: not a JSON object`);
  return v as Record<string, unknown>;
}

function ids(v: unknown): number[] {
  if (typeof v === 'number') return [v];
  return Array.isArray(v) ? v.filter((x): x is number => typeof x === 'number') : [];
}
