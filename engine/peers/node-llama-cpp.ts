/**
 * llama.cpp as a peer, through npm's prebuilt `node-llama-cpp`: the yardstick for our CPU backend (same weights,
 * exported by engine/model/gguf.ts) and the engine behind the llama.cpp-server adapter in tests.
 *
 * It is not a dependency of mgd: its optional GPU packages weigh ~700 MB. It is installed on demand, CPU build only,
 * into `<cacheRoot>/peers/node-llama-cpp` and imported from there by absolute path. Installation goes to a temporary
 * directory renamed into place, so a crash or a concurrent install never leaves a half package under the real name.
 * Failure (no registry, no npm) is a value with the reason, so callers (tests, `bench decode --peer`) can skip.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { oneLine } from '../errors.js';
import { cacheRoot } from '../paths.js';

export const NODE_LLAMA_CPP_VERSION = '3.22.1';

/** The slice of node-llama-cpp's API we use (its own types are not available: it is not a dependency). */
export interface LlamaToken {
  readonly __brand?: 'token';
}
export interface LlamaSequence {
  evaluate(tokens: number[], options?: { temperature?: number; grammarEvaluationState?: unknown }): AsyncGenerator<number, void, void | number | number[]>;
  evaluateWithoutGeneratingNewTokens(tokens: number[]): Promise<void>;
  clearHistory(): Promise<void>;
  readonly contextTokens: number[];
  dispose(): void;
}
export interface LlamaContext {
  getSequence(): LlamaSequence;
  dispose(): Promise<void>;
}
export interface LlamaModel {
  tokenize(text: string, specialTokens?: boolean): number[];
  detokenize(tokens: readonly number[], specialTokens?: boolean): string;
  readonly tokens: { readonly eos: number | null };
  createContext(options: { contextSize?: number; threads?: number; batchSize?: number; sequences?: number }): Promise<LlamaContext>;
  dispose(): Promise<void>;
}
export interface Llama {
  loadModel(options: { modelPath: string; gpuLayers?: number; useMmap?: boolean }): Promise<LlamaModel>;
  createGrammar(options: { grammar: string }): Promise<unknown>;
  readonly cpuMathCores: number;
  dispose(): Promise<void>;
}
export interface NodeLlamaCpp {
  getLlama(options: Record<string, unknown>): Promise<Llama>;
  LlamaGrammarEvaluationState: new (options: { model: LlamaModel; grammar: unknown }) => unknown;
}

export type PeerResult = { ok: true; module: NodeLlamaCpp; dir: string } | { ok: false; reason: string };

export function peerDir(): string {
  return path.join(cacheRoot(), 'peers', 'node-llama-cpp');
}

function entryOf(dir: string): string {
  return path.join(dir, 'node_modules', 'node-llama-cpp', 'dist', 'index.js');
}

function installedVersion(dir: string): string | null {
  try {
    return (JSON.parse(fs.readFileSync(path.join(dir, 'node_modules', 'node-llama-cpp', 'package.json'), 'utf8')) as { version?: string }).version ?? null;
  } catch {
    return null;
  }
}

let loading: Promise<PeerResult> | null = null;

/** Imports node-llama-cpp from the cache, installing it first when `install` (default true) and it is missing. */
export function loadNodeLlamaCpp(opts: { install?: boolean; timeoutMs?: number } = {}): Promise<PeerResult> {
  if (opts.install === false) return load(false, 0); // a look without installing is not remembered as the answer
  loading ??= load(true, opts.timeoutMs ?? 300_000);
  return loading;
}

async function load(install: boolean, timeoutMs: number): Promise<PeerResult> {
  const dir = peerDir();
  if (installedVersion(dir) !== NODE_LLAMA_CPP_VERSION) {
    if (!install) return { ok: false, reason: `node-llama-cpp@${NODE_LLAMA_CPP_VERSION} is not installed in ${dir}` };
    const failed = await installInto(dir, timeoutMs);
    if (failed) return { ok: false, reason: failed };
  }
  try {
    process.env.NODE_LLAMA_CPP_SKIP_DOWNLOAD ??= 'true';
    const module = (await import(pathToFileURL(entryOf(dir)).href)) as NodeLlamaCpp;
    return { ok: true, module, dir };
  } catch (e) {
    return { ok: false, reason: `node-llama-cpp did not load from ${dir}: ${oneLine(e)}` };
  }
}

/** npm install into a temporary sibling, then rename. Returns null on success, else why not. */
async function installInto(dir: string, timeoutMs: number): Promise<string | null> {
  fs.mkdirSync(path.dirname(dir), { recursive: true });
  const tmp = fs.mkdtempSync(`${dir}.tmp-`);
  try {
    fs.writeFileSync(path.join(tmp, 'package.json'), JSON.stringify({ name: 'mgd-peer-node-llama-cpp', private: true }));
    const args = ['install', '--no-save', '--omit=optional', '--no-audit', '--no-fund', '--loglevel=error', `node-llama-cpp@${NODE_LLAMA_CPP_VERSION}`, `@node-llama-cpp/linux-x64@${NODE_LLAMA_CPP_VERSION}`];
    const err = await new Promise<string | null>((resolve) => {
      execFile('npm', args, { cwd: tmp, timeout: timeoutMs, env: { ...process.env, NODE_LLAMA_CPP_SKIP_DOWNLOAD: 'true' }, maxBuffer: 16 << 20 }, (e, _out, stderr) =>
        resolve(e ? `npm install node-llama-cpp@${NODE_LLAMA_CPP_VERSION} failed: ${oneLine(stderr || e).slice(0, 300)}` : null),
      );
    });
    if (err) return err;
    if (!fs.existsSync(entryOf(tmp))) return `npm install left no ${path.relative(tmp, entryOf(tmp))}`;
    fs.rmSync(dir, { recursive: true, force: true }); // an older version, if any
    try {
      fs.renameSync(tmp, dir);
    } catch (e) {
      if (installedVersion(dir) !== NODE_LLAMA_CPP_VERSION) return `could not move the install into ${dir}: ${oneLine(e)}`; // else a concurrent install won
    }
    return null;
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

let llamaPromise: Promise<Llama> | null = null;

/** The CPU llama.cpp instance (prebuilt binary, never built from source, no GPU), created once per process. */
export function getCpuLlama(mod: NodeLlamaCpp): Promise<Llama> {
  llamaPromise ??= mod.getLlama({ gpu: false, build: 'never', progressLogs: false, logLevel: 'error', usePrebuiltBinaries: true });
  return llamaPromise;
}
