/**
 * Who may talk to the HTTP API. A server on loopback is still reachable from every web page the user opens, so every
 * request passes three checks, in this order, before any route (the preflight's answer comes between the second and
 * the third, since a browser sends no credentials with it):
 *   1. Host must name the address the server listens on. A page on evil.example that re-resolves its name to
 *      127.0.0.1 (DNS rebinding) reaches the port, but its requests say `Host: evil.example:PORT`.
 *   2. A request a browser makes for a page carries `Origin`, or `Sec-Fetch-Site` other than `none` (typed or
 *      bookmarked) or `same-origin`: refused unless `--allow-origin` names that exact origin, which then gets CORS
 *      headers naming it (never `*`).
 *   3. The bearer token, when one is set, compared in constant time over equal-length digests.
 * A request without a Host header (HTTP/1.0; Node itself refuses HTTP/1.1 without one) passes on loopback only:
 * browsers always send Host, so it is not a rebound page, and only a program on this machine can reach a loopback
 * port. On any other address the Host check is the only sign of which name the client meant, so it is required.
 */
import crypto from 'node:crypto';
import type http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import { BadInputError } from '../../engine/errors.js';

export interface GuardOptions {
  /** The address (or name) given to listen(). */
  host: string;
  /** The port actually bound (after port 0 picked one). */
  port: number;
  token?: string;
  /** Exact serialized origins (`https://app.example`) whose pages may call the API. */
  allowOrigins?: readonly string[];
}

export interface Refusal {
  status: number;
  error: string;
}

/** What a preflight or a real response to an allowed origin says about it. */
export const CORS_METHODS = 'GET, POST, OPTIONS';
export const CORS_HEADERS = 'authorization, content-type, accept';

export function isLoopback(host: string): boolean {
  const h = unbracket(host);
  return h === 'localhost' || h === '::1' || (net.isIPv4(h) && h.startsWith('127.'));
}

const WILDCARDS = new Set(['0.0.0.0', '::']);

export class RequestGuard {
  private readonly hosts: ReadonlySet<string>;
  private readonly loopback: boolean;
  private readonly origins: ReadonlySet<string>;
  private readonly expected: Buffer | null;

  constructor(o: GuardOptions) {
    this.loopback = isLoopback(o.host);
    this.hosts = acceptedHosts(o.host, o.port);
    this.origins = new Set(checkOrigins(o.allowOrigins ?? []));
    this.expected = o.token ? digest(o.token) : null;
  }

  /** Refuses a request that names another host or comes from a page of an origin not allowed (checks 1 and 2). */
  refuse(req: http.IncomingMessage): Refusal | null {
    const host = req.headersDistinct.host ?? [];
    if (host.length > 1) return { status: 403, error: 'more than one Host header' };
    if (host.length === 0) {
      if (!this.loopback) return { status: 403, error: 'a Host header is required off loopback' };
    } else if (!this.hosts.has(host[0]!.toLowerCase())) {
      return { status: 403, error: `Host ${quote(host[0]!)} is not this server's address (a DNS rebinding page?); use ${[...this.hosts][0]}` };
    }
    const origin = req.headersDistinct.origin ?? [];
    if (origin.length > 1) return { status: 403, error: 'more than one Origin header' };
    if (origin.length === 1) {
      if (this.origins.has(origin[0]!)) return null;
      return { status: 403, error: `origin ${quote(origin[0]!)} is not allowed (serve --http --allow-origin ORIGIN allows one)` };
    }
    const site = req.headersDistinct['sec-fetch-site'] ?? [];
    if (site.some((s) => s !== 'none' && s !== 'same-origin')) return { status: 403, error: `cross-site request refused (Sec-Fetch-Site: ${quote(site.join(', '))})` };
    return null;
  }

  /** The request's Origin, when it is one that --allow-origin named (call after refuse() let the request pass). */
  allowedOrigin(req: http.IncomingMessage): string | undefined {
    const origin = req.headers.origin;
    return origin !== undefined && this.origins.has(origin) ? origin : undefined;
  }

  /** Whether the request carries the bearer token (always true without one). Constant time in the token's content. */
  authorized(req: http.IncomingMessage): boolean {
    if (!this.expected) return true;
    const m = /^Bearer (.+)$/is.exec(req.headers.authorization ?? '');
    // digest something even when the header is missing or malformed, so every refusal costs the same
    return crypto.timingSafeEqual(digest(m?.[1] ?? ''), this.expected) && m !== null;
  }
}

/** The Host header values that name this server: `name:port`, and bare `name` on port 80 (browsers omit it). */
function acceptedHosts(bound: string, port: number): ReadonlySet<string> {
  const b = unbracket(bound).toLowerCase();
  const names: string[] = [];
  if (b === 'localhost') names.push('localhost', '127.0.0.1', '::1');
  else if (isLoopback(b)) names.push(b, 'localhost');
  else if (WILDCARDS.has(b)) {
    // every address of this machine, its name, and the wildcard as the startup line prints it; with a token only,
    // which startHttpServer insists on
    names.push(b, '127.0.0.1', 'localhost', '::1', os.hostname().toLowerCase());
    for (const list of Object.values(os.networkInterfaces())) for (const a of list ?? []) if (a.scopeid === undefined || a.scopeid === 0) names.push(a.address.toLowerCase());
  } else names.push(b);
  const hosts = new Set<string>();
  for (const n of names) {
    const h = net.isIPv6(n) ? `[${n}]` : n;
    hosts.add(`${h}:${port}`);
    if (port === 80) hosts.add(h);
  }
  return hosts;
}

/** --allow-origin values, each one origin exactly as browsers send it (`scheme://host[:port]`, no path), or throws. */
export function checkOrigins(origins: readonly string[]): readonly string[] {
  for (const o of origins) checkOrigin(o);
  return origins;
}

function checkOrigin(origin: string): void {
  if (origin === '*' || origin === 'null') throw new BadInputError(`--allow-origin ${origin} would let any page in; name one origin (https://app.example)`);
  if (!/^[a-z][a-z0-9+.-]*:\/\/[^/?#\s]+$/.test(origin)) throw new BadInputError(`--allow-origin must be an origin like https://app.example (no path, no trailing /), got ${quote(origin)}`);
  if (/^https?:/.test(origin) && new URL(origin).origin !== origin) {
    throw new BadInputError(`--allow-origin ${quote(origin)} is not how browsers write it; use ${new URL(origin).origin}`);
  }
}

function digest(s: string): Buffer {
  return crypto.createHash('sha256').update(s, 'utf8').digest();
}

function unbracket(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

/** A header value for an error message: JSON-quoted (no control characters reach a log) and cut short. */
function quote(s: string): string {
  return JSON.stringify(s.length > 100 ? `${s.slice(0, 100)}…` : s);
}
