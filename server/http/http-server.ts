/**
 * The headless HTTP API, a thin door into the engine:
 *   GET  /health           -> {status: 'loading' | 'ready' | 'error', model, error?, kvCache?} (kvCache: the engine's KV
 *                             cache counters, once the model is loaded)
 *   POST /v1/completions   {prefix, suffix?, filepath?, language?, max_tokens?, monitors?, stream?}
 *                          -> the CLI's JSON (text, tokens, timings, monitor, cache), or with stream: true (or
 *                             Accept: text/event-stream) Server-Sent Events: `data: {"text": delta}` per piece,
 *                             then `event: done` with the full result.
 * Safety: binds loopback unless told otherwise, and then only with a bearer token; every request must name this
 * server in its Host header and must not come from a web page unless --allow-origin names that page's origin
 * (request-guard.ts); bodies over 2 MiB are refused; file paths must resolve, symbolic links followed, inside the
 * configured workspace (workspace-path.ts). Refusals are one-line JSON errors. A client that disconnects aborts its
 * decode.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Engine, type CompletionRequest, type EngineOptions } from '../../engine/engine.js';
import { BadInputError, CancelledError, oneLine } from '../../engine/errors.js';
import { checkOrigins, CORS_HEADERS, CORS_METHODS, isLoopback, RequestGuard } from './request-guard.js';
import { workspacePath } from './workspace-path.js';

export { isLoopback };

export interface HttpOptions {
  host: string;
  port: number;
  token?: string;
  /** Origins (`https://app.example`) whose web pages may call the API; any other page is refused. */
  allowOrigins?: readonly string[];
  workspace: string;
  engine: EngineOptions;
  log?: (line: string) => void;
}

const MAX_BODY = 2 * 1024 * 1024;
/** An oversized upload is read and discarded up to here (so the client gets its 413), then the socket is cut. */
const MAX_DRAIN = 16 * 1024 * 1024;

export async function startHttpServer(o: HttpOptions): Promise<{ server: http.Server; url: string; close: () => Promise<void> }> {
  if (!isLoopback(o.host) && !o.token) throw new BadInputError(`binding ${o.host} (not loopback) needs --token`);
  checkOrigins(o.allowOrigins ?? []); // before a model loads; the guard itself needs the port bound
  let guard: RequestGuard | undefined;
  const log = o.log ?? (() => {});
  let loadError: string | null = null;
  const engine = Engine.load(o.engine).catch((e: unknown) => {
    loadError = oneLine(e);
    log(`mgd: the model could not be loaded: ${loadError}`);
    return null;
  });
  let ready: Engine | null = null;
  void engine.then((e) => (ready = e));
  const workspace = path.resolve(o.workspace);

  const server = http.createServer((req, res) => {
    handle(req, res).catch((e: unknown) => {
      log(`mgd: http handler failed: ${oneLine(e)}`);
      if (!res.headersSent) send(res, 500, { error: 'internal error' });
      else res.end();
    });
  });

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    res.setHeader('vary', 'Origin');
    res.setHeader('x-content-type-options', 'nosniff');
    if (!guard) return send(res, 503, { error: 'not listening yet' });
    const refusal = guard.refuse(req);
    if (refusal) {
      log(`mgd: refused ${req.method} ${JSON.stringify((req.url ?? '').slice(0, 100))}: ${refusal.error}`);
      return send(res, refusal.status, { error: refusal.error });
    }
    const origin = guard.allowedOrigin(req);
    if (origin) res.setHeader('access-control-allow-origin', origin);
    if (req.method === 'OPTIONS') {
      // a preflight (sent without credentials, so before the token) or a plain question about the methods
      const headers: http.OutgoingHttpHeaders = { allow: CORS_METHODS };
      if (origin) Object.assign(headers, { 'access-control-allow-methods': CORS_METHODS, 'access-control-allow-headers': CORS_HEADERS, 'access-control-max-age': '600' });
      res.writeHead(204, headers);
      return void res.end();
    }
    if (!guard.authorized(req)) return send(res, 401, { error: 'missing or wrong bearer token' });
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (req.method === 'GET' && url.pathname === '/health') {
      return send(res, loadError ? 503 : 200, {
        status: loadError ? 'error' : ready ? 'ready' : 'loading',
        model: o.engine.model ?? 'embedded',
        ...(loadError ? { error: loadError } : {}),
        ...(ready ? { kvCache: ready.kvStats() } : {}),
      });
    }
    if (url.pathname !== '/v1/completions') return send(res, 404, { error: `no route ${req.method} ${url.pathname}` });
    if (req.method !== 'POST') return send(res, 405, { error: 'use POST' });

    let body: Record<string, unknown>;
    try {
      body = await readJson(req);
    } catch (e) {
      return send(res, e instanceof TooLarge ? 413 : 400, { error: oneLine(e) });
    }
    let request: CompletionRequest & { stream: boolean };
    try {
      request = toRequest(body, workspace);
    } catch (e) {
      return send(res, 400, { error: oneLine(e) });
    }
    const e = await engine;
    if (!e) return send(res, 503, { error: `model not loaded: ${loadError}` });
    const ac = new AbortController();
    res.on('close', () => ac.abort()); // the client went away: stop decoding
    const stream = request.stream || (req.headers.accept ?? '').includes('text/event-stream');
    if (stream) {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
      request.onText = (delta) => res.write(`data: ${JSON.stringify({ text: delta })}\n\n`);
    }
    try {
      const result = await e.complete({ ...request, signal: ac.signal });
      if (stream) {
        res.write(`event: done\ndata: ${JSON.stringify(result)}\n\n`);
        res.end();
      } else send(res, 200, result);
    } catch (err) {
      if (err instanceof CancelledError) return void res.end();
      const status = err instanceof BadInputError ? 400 : 500;
      if (stream) {
        res.write(`event: error\ndata: ${JSON.stringify({ error: oneLine(err) })}\n\n`);
        res.end();
      } else send(res, status, { error: oneLine(err) });
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port, o.host, () => {
      // before the first request can arrive: the Host check needs the port actually bound
      guard = new RequestGuard({ host: o.host, port: (server.address() as AddressInfo).port, token: o.token, allowOrigins: o.allowOrigins });
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const url = `http://${o.host.includes(':') ? `[${o.host}]` : o.host}:${addr.port}`;
  log(`mgd: listening on ${url}`);
  return {
    server,
    url,
    close: async () => {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await (await engine)?.dispose();
    },
  };
}

class TooLarge extends Error {}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function readJson(req: http.IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_DRAIN) {
      req.destroy();
      throw new TooLarge(`request body over ${MAX_BODY} bytes`);
    }
    if (size <= MAX_BODY) chunks.push(chunk as Buffer);
  }
  if (size > MAX_BODY) throw new TooLarge(`request body over ${MAX_BODY} bytes`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new Error('request body is not valid JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('request body must be a JSON object');
  return parsed as Record<string, unknown>;
}

/** Validates the body against the contract of design.md; file paths must stay inside the workspace, links resolved. */
export function toRequest(b: Record<string, unknown>, workspace: string): CompletionRequest & { stream: boolean } {
  const str = (k: string, required = false): string | undefined => {
    const v = b[k];
    if (v === undefined || v === null) {
      if (required) throw new Error(`"${k}" is required`);
      return undefined;
    }
    if (typeof v !== 'string') throw new Error(`"${k}" must be a string`);
    return v;
  };
  const prefix = str('prefix', true)!;
  const suffix = str('suffix') ?? '';
  const filepath = str('filepath');
  const filePath = filepath === undefined ? undefined : workspacePath(workspace, filepath);
  const max = b.max_tokens;
  if (max !== undefined && (typeof max !== 'number' || !Number.isInteger(max) || max < 1 || max > 4096)) throw new Error('"max_tokens" must be an integer in 1..4096');
  if (b.monitors !== undefined && typeof b.monitors !== 'boolean') throw new Error('"monitors" must be a boolean');
  if (b.verify !== undefined && typeof b.verify !== 'boolean') throw new Error('"verify" must be a boolean');
  const verifyMs = b.verify_ms;
  if (verifyMs !== undefined && (typeof verifyMs !== 'number' || !Number.isInteger(verifyMs) || verifyMs < 0 || verifyMs > 10_000)) throw new Error('"verify_ms" must be an integer in 0..10000');
  return {
    prefix,
    suffix,
    filePath,
    workspace,
    language: str('language'),
    maxTokens: (max as number | undefined) ?? 64,
    monitors: (b.monitors as boolean | undefined) ?? true,
    verify: (b.verify as boolean | undefined) ?? true,
    ...(verifyMs !== undefined ? { verifyMs: verifyMs as number } : {}),
    stream: b.stream === true,
  };
}
