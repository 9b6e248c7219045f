/**
 * The HTTP API against what a web page can send it: DNS rebinding (a foreign Host), cross-site requests and their
 * preflights, the bearer token, and file paths that leave the workspace through symbolic links. Requests go through
 * node:http (fetch cannot set Host) and one raw socket (HTTP/1.0 without Host).
 */
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHttpServer } from '../server/http/http-server.js';
import { main } from '../server/cli.js';
import { ensureFixtureModel } from '../engine/model/fixtures.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mgd-http-security-'));
const workspace = path.join(tmp, 'workspace');
const outside = path.join(tmp, 'outside');
const ALLOWED = 'https://app.example';
const EVIL = 'https://evil.example';
const model = ensureFixtureModel('tiny');
let srv: Awaited<ReturnType<typeof startHttpServer>>;
let port: number;
const logged: string[] = [];

beforeAll(async () => {
  fs.mkdirSync(path.join(workspace, 'src'), { recursive: true });
  fs.mkdirSync(outside, { recursive: true });
  fs.writeFileSync(path.join(workspace, 'src/a.ts'), 'export const a = 1;\n');
  fs.writeFileSync(path.join(outside, 'secret.ts'), 'export const secret = "do not read";\n');
  fs.symlinkSync(path.join(outside, 'secret.ts'), path.join(workspace, 'src/leak.ts'));
  fs.symlinkSync(outside, path.join(workspace, 'linked-out'));
  fs.symlinkSync(path.join(workspace, 'src/a.ts'), path.join(workspace, 'src/alias.ts'));
  fs.symlinkSync(path.join(outside, 'not-yet.ts'), path.join(workspace, 'src/dangling.ts'));
  srv = await startHttpServer({ host: '127.0.0.1', port: 0, workspace, allowOrigins: [ALLOWED], engine: { model, threads: 2 }, log: (l) => logged.push(l) });
  port = Number(new URL(srv.url).port);
});
afterAll(async () => {
  await srv?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One request as a browser or curl would send it; `host` in headers replaces the one node:http would write. */
function request(o: { port?: number; method?: string; path?: string; headers?: Record<string, string>; body?: unknown } = {}): Promise<Reply> {
  const body = o.body === undefined ? undefined : JSON.stringify(o.body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port: o.port ?? port,
        method: o.method ?? (body ? 'POST' : 'GET'),
        path: o.path ?? (body ? '/v1/completions' : '/health'),
        headers: { ...(body ? { 'content-type': 'application/json' } : {}), ...o.headers },
        agent: false,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** A refusal is one line of JSON with only an error. */
function expectRefusal(r: Reply, status: number, message: RegExp): void {
  expect(r.status).toBe(status);
  expect(r.body).not.toContain('\n');
  const j = JSON.parse(r.body);
  expect(Object.keys(j)).toEqual(['error']);
  expect(j.error).toMatch(message);
  expect(r.headers['access-control-allow-origin']).toBeUndefined();
}

const COMPLETE = { prefix: 'export const b = ', suffix: '\n', filepath: 'src/b.ts', max_tokens: 2, monitors: false, verify: false };
/** What a page on evil.example sends with fetch(): its origin, and the fetch metadata of a cross-site request. */
const BROWSER = { origin: EVIL, 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'cors', 'sec-fetch-dest': 'empty', 'user-agent': 'Mozilla/5.0 (X11; Linux x86_64)' };

describe('DNS rebinding: the Host header must name this server', () => {
  it('refuses a page that rebound evil.example to 127.0.0.1, and keeps serving', async () => {
    expectRefusal(await request({ headers: { host: `evil.example:${port}` } }), 403, /Host "evil\.example:\d+" is not this server's address/);
    expectRefusal(await request({ body: COMPLETE, headers: { ...BROWSER, host: `evil.example:${port}`, 'sec-fetch-site': 'same-origin' } }), 403, /Host/);
    expect((await request()).status).toBe(200);
  });

  it('accepts 127.0.0.1:PORT and localhost:PORT (any case); refuses another port, [::1] and bare names', async () => {
    expect((await request({ headers: { host: `127.0.0.1:${port}` } })).status).toBe(200);
    expect((await request({ headers: { host: `LocalHost:${port}` } })).status).toBe(200);
    expectRefusal(await request({ headers: { host: `127.0.0.1:${port + 1}` } }), 403, /Host/);
    expectRefusal(await request({ headers: { host: `[::1]:${port}` } }), 403, /Host/); // the server is not on ::1
    expectRefusal(await request({ headers: { host: 'localhost' } }), 403, /Host/);
    expectRefusal(await request({ headers: { host: `localhost.:${port}` } }), 403, /Host/);
  });

  it('accepts a request without Host on loopback (an HTTP/1.0 script; browsers always send Host)', async () => {
    const raw = await new Promise<string>((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => s.end('GET /health HTTP/1.0\r\n\r\n'));
      let text = '';
      s.on('data', (c) => (text += c.toString()));
      s.on('end', () => resolve(text));
      s.on('error', reject);
    });
    expect(raw).toMatch(/^HTTP\/1\.[01] 200 /);
  });
});

describe('cross-site requests from web pages', () => {
  it('refuses a browser-shaped completion request from evil.example; a curl-like one works', async () => {
    expectRefusal(await request({ body: COMPLETE, headers: BROWSER }), 403, /origin "https:\/\/evil\.example" is not allowed/);
    const curl = await request({ body: COMPLETE, headers: { 'user-agent': 'curl/8.5.0', accept: '*/*' } });
    expect(curl.status).toBe(200);
    expect(typeof JSON.parse(curl.body).text).toBe('string');
    expect(curl.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('refuses Sec-Fetch-Site cross-site or same-site without an Origin (a no-cors GET); none and same-origin pass', async () => {
    expectRefusal(await request({ headers: { 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'no-cors' } }), 403, /cross-site request refused/);
    expectRefusal(await request({ headers: { 'sec-fetch-site': 'same-site' } }), 403, /cross-site request refused/);
    expect((await request({ headers: { 'sec-fetch-site': 'none', 'sec-fetch-mode': 'navigate' } })).status).toBe(200);
    expect((await request({ headers: { 'sec-fetch-site': 'same-origin' } })).status).toBe(200);
  });

  it("refuses any Origin not allowed, even this server's own or null", async () => {
    expectRefusal(await request({ headers: { origin: `http://127.0.0.1:${port}`, 'sec-fetch-site': 'same-origin' } }), 403, /not allowed/);
    expectRefusal(await request({ headers: { origin: 'null' } }), 403, /not allowed/);
    expectRefusal(await request({ headers: { origin: `${ALLOWED}.evil.example` } }), 403, /not allowed/);
  });

  it('answers a preflight from evil.example with 403 and one from the allowed origin with 204 naming it', async () => {
    const preflight = (origin: string) =>
      request({ method: 'OPTIONS', path: '/v1/completions', headers: { ...BROWSER, origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' } });
    expectRefusal(await preflight(EVIL), 403, /not allowed/);
    const ok = await preflight(ALLOWED);
    expect(ok.status).toBe(204);
    expect(ok.headers['access-control-allow-origin']).toBe(ALLOWED);
    expect(ok.headers.vary).toMatch(/Origin/);
    expect(ok.headers['access-control-allow-methods']).toMatch(/POST/);
    expect(ok.headers['access-control-allow-headers']).toMatch(/authorization/);
    expect(ok.headers['access-control-allow-headers']).toMatch(/content-type/);
  });

  it('adds Access-Control-Allow-Origin to real responses for the allowed origin only, never *', async () => {
    const ok = await request({ body: COMPLETE, headers: { ...BROWSER, origin: ALLOWED } });
    expect(ok.status).toBe(200);
    expect(ok.headers['access-control-allow-origin']).toBe(ALLOWED);
    expect(ok.headers.vary).toMatch(/Origin/);
    const plain = await request();
    expect(plain.headers['access-control-allow-origin']).toBeUndefined();
    expect(plain.headers.vary).toMatch(/Origin/);
  });

  it('takes --allow-origin from the command line; refuses *, null and origins with a path', async () => {
    for (const bad of ['*', 'null', 'https://app.example/', 'https://App.Example', 'app.example']) {
      await expect(startHttpServer({ host: '127.0.0.1', port: 0, workspace, allowOrigins: [bad], engine: {} })).rejects.toThrow(/--allow-origin/);
    }
    let stderr = '';
    const code = await main(['serve', '--http', '--port', '0', '--allow-origin', ALLOWED, '--allow-origin', '*'], { stdout: () => {}, stderr: (s) => (stderr += s) });
    expect(code).toBe(2);
    expect(stderr).toMatch(/--allow-origin \* would let any page in/);
    let help = '';
    await main(['--help'], { stdout: (s) => (help += s), stderr: () => {} });
    expect(help).toMatch(/--allow-origin ORIGIN/);
  });
});

describe('file paths through symbolic links', () => {
  it.each([
    ['a link to a file outside', 'src/leak.ts', /leads through a symbolic link to outside the workspace/],
    ['a new file in a linked directory outside', 'linked-out/new.ts', /leads through a symbolic link to outside the workspace/],
    ['an existing file in a linked directory outside', 'linked-out/secret.ts', /leads through a symbolic link to outside the workspace/],
    ['a link that points nowhere yet', 'src/dangling.ts', /symbolic link that cannot be resolved/],
    ['a path up and out by name', '../outside/secret.ts', /outside the workspace/],
    ['an absolute path outside', path.join(outside, 'secret.ts'), /outside the workspace/],
  ])('refuses %s with a one-line 400', async (_name, filepath, message) => {
    expectRefusal(await request({ body: { ...COMPLETE, filepath } }), 400, message);
  });

  it('accepts files inside, a link that stays inside, and a file not saved yet; keeps serving after refusals', async () => {
    for (const filepath of ['src/a.ts', 'src/alias.ts', 'src/new/deeper.ts']) {
      const r = await request({ body: { ...COMPLETE, filepath } });
      expect(r.status, `${filepath}: ${r.body}`).toBe(200);
    }
    expect((await request()).status).toBe(200);
  });
});

describe('the bearer token', () => {
  const TOKEN = 'correct-horse-battery-staple';

  it('is required, compared whole (same length, one character off, fails), and never logged', async () => {
    const lines: string[] = [];
    const guarded = await startHttpServer({ host: '127.0.0.1', port: 0, workspace, token: TOKEN, engine: { model, threads: 2 }, log: (l) => lines.push(l) });
    const p = Number(new URL(guarded.url).port);
    try {
      expectRefusal(await request({ port: p }), 401, /bearer token/);
      expectRefusal(await request({ port: p, headers: { authorization: `Bearer ${TOKEN.slice(0, -1)}X` } }), 401, /bearer token/);
      expectRefusal(await request({ port: p, headers: { authorization: `Bearer ${TOKEN}x` } }), 401, /bearer token/);
      expectRefusal(await request({ port: p, headers: { authorization: TOKEN } }), 401, /bearer token/);
      expect((await request({ port: p, headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(200);
      expect((await request({ port: p, headers: { authorization: `bearer ${TOKEN}` } })).status).toBe(200); // the scheme is case-insensitive
      // a rebound page that somehow had the token is still refused by its Host
      expectRefusal(await request({ port: p, headers: { authorization: `Bearer ${TOKEN}`, host: `evil.example:${p}` } }), 403, /Host/);
      expectRefusal(await request({ port: p, headers: { authorization: `Bearer ${TOKEN}`, ...BROWSER } }), 403, /not allowed/);
      expect((await request({ port: p, body: { ...COMPLETE, filepath: 'src/leak.ts' }, headers: { authorization: `Bearer ${TOKEN}` } })).status).toBe(400);
    } finally {
      await guarded.close();
    }
    expect(lines.length).toBeGreaterThan(0);
    for (const l of [...lines, ...logged]) expect(l).not.toContain(TOKEN.slice(0, 10));
  });

  it('off loopback (a wildcard bind, with its token): loopback names and this machine\'s addresses pass, others and no Host do not', async () => {
    const wide = await startHttpServer({ host: '0.0.0.0', port: 0, workspace, token: TOKEN, engine: { model, threads: 2 } });
    const p = Number(new URL(wide.url).port);
    const auth = { authorization: `Bearer ${TOKEN}` };
    try {
      expect((await request({ port: p, headers: { ...auth } })).status).toBe(200);
      expect((await request({ port: p, headers: { ...auth, host: `localhost:${p}` } })).status).toBe(200);
      expect((await request({ port: p, headers: { ...auth, host: `0.0.0.0:${p}` } })).status).toBe(200); // the URL the startup line prints
      const lan = Object.values(os.networkInterfaces())
        .flat()
        .find((a) => a && a.family === 'IPv4' && !a.internal);
      if (lan) expect((await request({ port: p, headers: { ...auth, host: `${lan.address}:${p}` } })).status).toBe(200);
      expectRefusal(await request({ port: p, headers: { ...auth, host: `evil.example:${p}` } }), 403, /Host/);
      const raw = await new Promise<string>((resolve, reject) => {
        const s = net.connect(p, '127.0.0.1', () => s.end(`GET /health HTTP/1.0\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`));
        let text = '';
        s.on('data', (c) => (text += c.toString()));
        s.on('end', () => resolve(text));
        s.on('error', reject);
      });
      expect(raw).toMatch(/^HTTP\/1\.[01] 403 /);
      expect(raw).toMatch(/Host header is required off loopback/);
    } finally {
      await wide.close();
    }
  });
});
