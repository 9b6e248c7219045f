/**
 * Models by Hugging Face id: found in the cache `huggingface_hub` keeps (so checkpoints downloaded with Python tools
 * load with no copy), and pulled into that same cache when asked.
 *
 *   HF_HUB_CACHE (else HF_HOME/hub, else ~/.cache/huggingface/hub)/
 *     models--ORG--NAME/
 *       refs/main                      the commit a branch or tag points at
 *       blobs/<etag>                   file contents, named by the hub's ETag (sha256 for LFS files)
 *       snapshots/<commit>/<file>      symbolic links into blobs/
 *
 * A pull asks the hub's API for the revision's file list, takes what a model directory needs (config, tokenizer,
 * safetensors, sharded too), and downloads each file into blobs/<etag>.incomplete with HTTP range requests, so an
 * interrupted pull resumes where it stopped; LFS files are checked against their sha256 before they are renamed into
 * place, so nothing half-written or tampered ever looks complete. HF_ENDPOINT, HF_TOKEN and the proxy variables
 * (HTTPS_PROXY, HTTP_PROXY, NO_PROXY) are honoured; HF_HUB_OFFLINE=1 makes an id that is not cached an error instead
 * of a download.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { EnvHttpProxyAgent, fetch as undiciFetch, type Dispatcher } from 'undici';
import { BadInputError } from '../errors.js';
import { listOllamaModels, OLLAMA_PREFIX, resolveOllamaModel } from './ollama.js';

export interface ModelId {
  repo: string;
  revision: string;
}

/** `org/name` or `org/name@revision` (a branch, tag or commit); null for anything else (a path, say). */
export function parseModelId(s: string): ModelId | null {
  const m = /^([A-Za-z0-9][\w.-]*)\/([A-Za-z0-9][\w.-]*)(?:@([\w./-]+))?$/.exec(s);
  if (!m || m[2]!.endsWith('.gguf')) return null;
  return { repo: `${m[1]}/${m[2]}`, revision: m[3] ?? 'main' };
}

/**
 * A model's name for a person: `ORG/NAME` for a snapshot in the Hugging Face cache (`models--ORG--NAME/
 * snapshots/REV`), `ollama:NAME:TAG` for an Ollama blob, else the directory's (or GGUF file's) own name.
 */
export function modelLabel(dir: string): string {
  if (path.basename(path.dirname(dir)) === 'blobs' && /^sha256[-:]/.test(path.basename(dir))) {
    const named = listOllamaModels().find((m) => path.resolve(m.file) === path.resolve(dir));
    if (named) return named.id;
  }
  const parts = path.resolve(dir).split(path.sep);
  const snap = parts.lastIndexOf('snapshots');
  const repo = snap > 0 ? /^models--(.+?)--(.+)$/.exec(parts[snap - 1]!) : null;
  return repo ? `${repo[1]}/${repo[2]}` : path.basename(path.resolve(dir));
}

/** Where the Hugging Face cache is (as huggingface_hub finds it). */
export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  return path.join(env.HF_HOME ?? path.join(os.homedir(), '.cache', 'huggingface'), 'hub');
}

const isOffline = (env: NodeJS.ProcessEnv) => env.HF_HUB_OFFLINE === '1' || env.HF_HUB_OFFLINE === 'true';

const repoDir = (cache: string, repo: string) => path.join(cache, `models--${repo.replace('/', '--')}`);

/** The snapshot directory of a cached id, or null when that revision is not in the cache. */
export function cachedSnapshot(id: ModelId, cache = hubCacheDir()): string | null {
  const dir = repoDir(cache, id.repo);
  let commit = id.revision;
  if (!/^[0-9a-f]{40}$/.test(commit)) {
    try {
      commit = fs.readFileSync(path.join(dir, 'refs', id.revision), 'utf8').trim();
    } catch {
      return null;
    }
  }
  const snap = path.join(dir, 'snapshots', commit);
  return fs.existsSync(path.join(snap, 'config.json')) ? snap : null;
}

/**
 * Whether `arg` is a Hugging Face id (not also a path) that is not in the cache and may be pulled (not offline):
 * what a server started on a new machine pulls before it loads (as Tabby and llama.vscode do on first start).
 */
export function needsPull(arg: string, env: NodeJS.ProcessEnv = process.env): boolean {
  if (fs.existsSync(arg) || isOffline(env)) return false;
  const id = parseModelId(arg);
  return id !== null && cachedSnapshot(id, hubCacheDir(env)) === null;
}

/**
 * What `--model` names, as a directory or file: a path as it is; an id (that is not also a path) as its cached
 * snapshot; `ollama:NAME[:TAG]` as the GGUF blob Ollama keeps (ollama.ts).
 * An id not in the cache is a one-line error that says how to get it.
 */
export function resolveModelArg(arg: string, env: NodeJS.ProcessEnv = process.env): string {
  if (fs.existsSync(arg)) return arg;
  if (arg.startsWith(OLLAMA_PREFIX)) return resolveOllamaModel(arg, env);
  const id = parseModelId(arg);
  if (!id) return arg; // a path that does not exist: openModelDir says so
  const where = hubCacheDir(env);
  const snap = cachedSnapshot(id, where);
  if (snap) return snap;
  const offline = isOffline(env) ? ' (HF_HUB_OFFLINE is set)' : '';
  throw new BadInputError(`model ${arg} is neither a directory nor in the Hugging Face cache at ${where}${offline}; download it with: mgd model pull ${arg}`);
}

export interface CachedModel {
  id: string;
  /** Revisions (refs) and the commits they point at. */
  refs: Record<string, string>;
  snapshots: string[];
  bytes: number;
}

/** The models in the cache, with the bytes their blobs take. */
export function listCachedModels(cache = hubCacheDir()): CachedModel[] {
  let names: string[];
  try {
    names = fs.readdirSync(cache).filter((n) => n.startsWith('models--'));
  } catch {
    return [];
  }
  return names.sort().map((n) => {
    const dir = path.join(cache, n);
    const refs: Record<string, string> = {};
    for (const r of safeReaddir(path.join(dir, 'refs'))) refs[r] = fs.readFileSync(path.join(dir, 'refs', r), 'utf8').trim();
    let bytes = 0;
    for (const b of safeReaddir(path.join(dir, 'blobs'))) bytes += fs.statSync(path.join(dir, 'blobs', b)).size;
    return { id: n.slice('models--'.length).replace('--', '/'), refs, snapshots: safeReaddir(path.join(dir, 'snapshots')), bytes };
  });
}

function safeReaddir(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}

// ---- pulling ------------------------------------------------------------------------------------------------------

export interface PullProgress {
  file: string;
  /** Bytes of this file on disk (resumed bytes included) and its size. */
  done: number;
  total: number;
  /** Files finished and files in all. */
  files: number;
  of: number;
}

export interface PullOptions {
  revision?: string;
  env?: NodeJS.ProcessEnv;
  onProgress?: (p: PullProgress) => void;
  signal?: AbortSignal;
}

export interface PullResult {
  id: string;
  commit: string;
  dir: string;
  files: Array<{ name: string; bytes: number; resumedFrom: number; cached: boolean }>;
}

/** The files of a revision a model directory needs (weights only in safetensors: we build our own graph). */
function wanted(name: string): boolean {
  return (
    ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'model.safetensors.index.json'].includes(name) ||
    (/\.safetensors$/.test(name) && !name.includes('/'))
  );
}

export async function pullModel(arg: string, o: PullOptions = {}): Promise<PullResult> {
  const env = o.env ?? process.env;
  const parsed = parseModelId(arg);
  if (!parsed) throw new BadInputError(`"${arg}" is not a Hugging Face model id (ORG/NAME, optionally @REVISION)`);
  const id: ModelId = { repo: parsed.repo, revision: o.revision ?? parsed.revision };
  if (isOffline(env)) throw new BadInputError(`cannot pull ${id.repo}: HF_HUB_OFFLINE is set`);
  const endpoint = (env.HF_ENDPOINT ?? 'https://huggingface.co').replace(/\/+$/, '');
  const headers: Record<string, string> = { 'user-agent': 'mgd' };
  if (env.HF_TOKEN) headers.authorization = `Bearer ${env.HF_TOKEN}`;
  const net: Net = { headers, proxy: proxyFor(env) };
  const cache = hubCacheDir(env);
  const dir = repoDir(cache, id.repo);
  try {
    fs.mkdirSync(path.join(dir, 'blobs'), { recursive: true });
  } catch (e) {
    throw new BadInputError(`cannot write the Hugging Face cache at ${cache}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }

  const info = await getJson(`${endpoint}/api/models/${id.repo}/revision/${encodeURIComponent(id.revision)}`, net, id, endpoint, o.signal);
  const commit = typeof info.sha === 'string' && /^[0-9a-f]{40}$/.test(info.sha) ? info.sha : null;
  const siblings = Array.isArray(info.siblings) ? info.siblings.map((s: { rfilename?: unknown }) => s?.rfilename).filter((n: unknown): n is string => typeof n === 'string') : null;
  if (!commit || !siblings) throw new BadInputError(`${endpoint} answered for ${id.repo} without a commit and file list`);
  const files = siblings.filter(wanted).sort();
  if (!files.includes('config.json') || !files.some((f: string) => f.endsWith('.safetensors'))) {
    throw new BadInputError(`${id.repo}@${id.revision} has no config.json and safetensors weights (files: ${siblings.slice(0, 8).join(', ')}${siblings.length > 8 ? ', ...' : ''})`);
  }
  const snap = path.join(dir, 'snapshots', commit);
  fs.mkdirSync(snap, { recursive: true });
  const result: PullResult = { id: id.repo, commit, dir: snap, files: [] };
  for (const [k, name] of files.entries()) {
    const url = `${endpoint}/${id.repo}/resolve/${commit}/${name.split('/').map(encodeURIComponent).join('/')}`;
    const meta = await head(url, net, id, endpoint, o.signal);
    const blob = path.join(dir, 'blobs', meta.etag);
    const link = path.join(snap, name);
    const progress = (done: number) => o.onProgress?.({ file: name, done, total: meta.size, files: k, of: files.length });
    if (fs.existsSync(blob) && fs.statSync(blob).size === meta.size) {
      result.files.push({ name, bytes: meta.size, resumedFrom: meta.size, cached: true });
      progress(meta.size);
    } else {
      const resumedFrom = await download(url, blob, meta, net, progress, o.signal);
      result.files.push({ name, bytes: meta.size, resumedFrom, cached: false });
    }
    fs.rmSync(link, { force: true });
    fs.symlinkSync(path.relative(path.dirname(link), blob), link);
  }
  // the ref last: until every file is in place the revision is not in the cache
  fs.mkdirSync(path.join(dir, 'refs'), { recursive: true });
  if (!/^[0-9a-f]{40}$/.test(id.revision)) fs.writeFileSync(path.join(dir, 'refs', id.revision), commit);
  o.onProgress?.({ file: '', done: 0, total: 0, files: files.length, of: files.length });
  return result;
}

/** The hub's answer as one clear line: unknown id, gated without a token, unreachable. */
function hubError(status: number, id: ModelId, endpoint: string, what: string): BadInputError {
  if (status === 401 || status === 403) return new BadInputError(`${id.repo} is gated or private on ${endpoint}: set HF_TOKEN to a token that may read it`);
  if (status === 404) return new BadInputError(`${endpoint} has no ${what} for ${id.repo}@${id.revision}`);
  return new BadInputError(`${endpoint} answered ${status} for ${what} of ${id.repo}`);
}

/** How requests go out: the hub's headers (user agent, token), and the proxy the environment names, if any. */
interface Net {
  headers: Record<string, string>;
  proxy: Dispatcher | null;
}

/**
 * The proxy from the environment (HTTPS_PROXY / HTTP_PROXY / NO_PROXY, lower case too, as curl and huggingface_hub
 * read them), or null for direct connections. Node's own fetch ignores these variables.
 */
export function proxyFor(env: NodeJS.ProcessEnv): Dispatcher | null {
  const httpProxy = env.http_proxy ?? env.HTTP_PROXY;
  const httpsProxy = env.https_proxy ?? env.HTTPS_PROXY;
  if (!httpProxy && !httpsProxy) return null;
  return new EnvHttpProxyAgent({ httpProxy, httpsProxy, noProxy: env.no_proxy ?? env.NO_PROXY });
}

async function request(url: string, init: RequestInit, endpoint: string, proxy: Dispatcher | null = null): Promise<Response> {
  try {
    // through a proxy: undici's fetch, which takes the agent (its Response has the same shape)
    if (proxy) return (await undiciFetch(url, { ...(init as object), dispatcher: proxy })) as unknown as Response;
    return await fetch(url, init);
  } catch (e) {
    if ((e as Error).name === 'AbortError') throw e;
    const cause = (e as { cause?: { code?: string; message?: string } }).cause;
    throw new BadInputError(`cannot reach ${endpoint}: ${cause?.code ?? cause?.message ?? (e as Error).message}`);
  }
}

async function getJson(url: string, net: Net, id: ModelId, endpoint: string, signal?: AbortSignal): Promise<Record<string, any>> {
  const res = await request(url, { headers: net.headers, signal }, endpoint, net.proxy);
  if (!res.ok) throw hubError(res.status, id, endpoint, 'model information');
  try {
    return (await res.json()) as Record<string, any>;
  } catch {
    throw new BadInputError(`${endpoint} answered for ${id.repo} with something that is not JSON`);
  }
}

interface FileMeta {
  etag: string;
  size: number;
  /** LFS files: the sha256 the content must have. */
  sha256: string | null;
}

/** The file's ETag and size (for LFS files the hub names them in X-Linked-* headers on its redirect to storage). */
async function head(url: string, net: Net, id: ModelId, endpoint: string, signal?: AbortSignal): Promise<FileMeta> {
  const res = await request(url, { method: 'HEAD', headers: { ...net.headers, 'accept-encoding': 'identity' }, redirect: 'manual', signal }, endpoint, net.proxy);
  if (res.status >= 400) throw hubError(res.status, id, endpoint, url.slice(url.lastIndexOf('/') + 1));
  const etag = (res.headers.get('x-linked-etag') ?? res.headers.get('etag') ?? '').replace(/^W\//, '').replace(/"/g, '');
  const size = Number(res.headers.get('x-linked-size') ?? res.headers.get('content-length') ?? NaN);
  if (!/^[\w-]+$/.test(etag) || !Number.isSafeInteger(size) || size < 0) throw new BadInputError(`${endpoint} gave no usable ETag and size for ${url}`);
  return { etag, size, sha256: /^[0-9a-f]{64}$/.test(etag) ? etag : null };
}

/** Downloads into `<blob>.incomplete` (resuming what is there), checks it, renames it; returns the bytes resumed. */
async function download(url: string, blob: string, meta: FileMeta, net: Net, progress: (done: number) => void, signal?: AbortSignal): Promise<number> {
  const part = `${blob}.incomplete`;
  let have = fs.existsSync(part) ? fs.statSync(part).size : 0;
  if (have > meta.size) {
    fs.rmSync(part);
    have = 0;
  }
  const resumedFrom = have;
  if (have < meta.size) {
    const res = await request(url, { headers: { ...net.headers, 'accept-encoding': 'identity', ...(have ? { range: `bytes=${have}-` } : {}) }, signal }, url, net.proxy);
    if (res.status !== 200 && res.status !== 206) throw new BadInputError(`download of ${url} failed: ${res.status}`);
    if (res.status === 200 && have) have = 0; // the server ignored the range: start over
    const out = fs.openSync(part, have ? 'a' : 'w');
    try {
      if (!res.body) throw new BadInputError(`download of ${url} has no body`);
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        fs.writeSync(out, chunk);
        have += chunk.length;
        progress(have);
      }
    } catch (e) {
      if (e instanceof BadInputError) throw e;
      throw new BadInputError(`download of ${url} stopped at ${have} of ${meta.size} bytes (${(e as Error).message}); run the pull again to resume`);
    } finally {
      fs.closeSync(out);
    }
  }
  const size = fs.statSync(part).size;
  if (size !== meta.size) throw new BadInputError(`download of ${url} ended at ${size} of ${meta.size} bytes; run the pull again to resume`);
  if (meta.sha256) {
    const h = crypto.createHash('sha256');
    const fd = fs.openSync(part, 'r');
    const buf = Buffer.alloc(1 << 20);
    try {
      for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0; ) h.update(buf.subarray(0, n));
    } finally {
      fs.closeSync(fd);
    }
    if (h.digest('hex') !== meta.sha256) {
      fs.rmSync(part);
      throw new BadInputError(`${url} does not match its sha256 ${meta.sha256} (tampered or corrupt); it was deleted`);
    }
  }
  fs.renameSync(part, blob);
  return resumedFrom;
}
