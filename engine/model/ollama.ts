/**
 * Models Ollama has pulled, by the name Ollama knows them by: `--model ollama:qwen2.5-coder:1.5b`.
 *
 *   OLLAMA_MODELS (else ~/.ollama/models)/
 *     manifests/<host>/<namespace>/<name>/<tag>   JSON: layers[] with mediaType and digest
 *     blobs/sha256-<hex>                          the layer contents (older Ollama: `sha256:<hex>`)
 *
 * The layer of type application/vnd.ollama.image.model is a plain GGUF file, which gguf-model.ts opens where it
 * lies: nothing is copied. Names are Ollama's: `[host/][namespace/]name[:tag]`, host registry.ollama.ai and
 * namespace library by default, tag latest.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BadInputError } from '../errors.js';

export const OLLAMA_PREFIX = 'ollama:';
const MODEL_LAYER = 'application/vnd.ollama.image.model';

export function ollamaModelsDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.OLLAMA_MODELS || path.join(os.homedir(), '.ollama', 'models');
}

/** `ollama:NAME[:TAG]` -> the GGUF blob's path. A one-line error when Ollama has no such model. */
export function resolveOllamaModel(arg: string, env: NodeJS.ProcessEnv = process.env): string {
  const name = arg.slice(OLLAMA_PREFIX.length);
  const m = /^(?:([\w.-]+\.[\w.-]+(?::\d+)?)\/)?(?:([\w.-]+)\/)?([\w.-]+)(?::([\w.-]+))?$/.exec(name);
  if (!m) throw new BadInputError(`${JSON.stringify(arg)} is not an Ollama model name (ollama:NAME or ollama:NAME:TAG)`);
  const [, host = 'registry.ollama.ai', namespace = 'library', model, tag = 'latest'] = m;
  const root = ollamaModelsDir(env);
  const manifest = path.join(root, 'manifests', host, namespace!, model!, tag);
  let layers: unknown;
  try {
    layers = (JSON.parse(fs.readFileSync(manifest, 'utf8')) as { layers?: unknown }).layers;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new BadInputError(`Ollama has no model ${name}${name.includes(':') ? '' : ':latest'} in ${root} (ollama pull ${name}, or set OLLAMA_MODELS)`);
    throw new BadInputError(`Ollama manifest ${manifest} is unreadable (${code ?? (e as Error).message})`);
  }
  const layer = Array.isArray(layers) ? (layers as Array<{ mediaType?: unknown; digest?: unknown }>).find((l) => l?.mediaType === MODEL_LAYER) : undefined;
  const digest = typeof layer?.digest === 'string' ? layer.digest : null;
  if (!digest || !/^sha256:[0-9a-f]{64}$/.test(digest)) throw new BadInputError(`Ollama manifest ${manifest} names no model layer`);
  for (const file of [digest.replace(':', '-'), digest]) {
    const blob = path.join(root, 'blobs', file);
    if (fs.existsSync(blob)) return blob;
  }
  throw new BadInputError(`Ollama model ${name}: its weights ${digest.slice(0, 19)}... are missing from ${path.join(root, 'blobs')}`);
}

export interface OllamaModel {
  /** `ollama:NAME:TAG` as --model takes it (host and namespace only where not the defaults). */
  id: string;
  file: string;
  bytes: number;
}

/** The models Ollama has, for `mgd model list` and the editor's model picker. */
export function listOllamaModels(env: NodeJS.ProcessEnv = process.env): OllamaModel[] {
  const root = path.join(ollamaModelsDir(env), 'manifests');
  const out: OllamaModel[] = [];
  const dirs = (d: string) => {
    try {
      return fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return [];
    }
  };
  for (const host of dirs(root).filter((e) => e.isDirectory()))
    for (const ns of dirs(path.join(root, host.name)).filter((e) => e.isDirectory()))
      for (const model of dirs(path.join(root, host.name, ns.name)).filter((e) => e.isDirectory()))
        for (const tag of dirs(path.join(root, host.name, ns.name, model.name)).filter((e) => e.isFile())) {
          const prefix = (host.name === 'registry.ollama.ai' ? '' : `${host.name}/`) + (ns.name === 'library' && host.name === 'registry.ollama.ai' ? '' : `${ns.name}/`);
          const id = `${OLLAMA_PREFIX}${prefix}${model.name}:${tag.name}`;
          try {
            const file = resolveOllamaModel(id, env);
            out.push({ id, file, bytes: fs.statSync(file).size });
          } catch {
            // a manifest without its blob (a pull in progress, a pruned store): not a usable model
          }
        }
  return out.sort((a, b) => a.id.localeCompare(b.id));
}
