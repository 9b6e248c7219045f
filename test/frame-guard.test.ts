/**
 * The LSP frame guard: well-formed frames pass whatever the chunking, malformed ones are dropped and the stream
 * resynchronises at the next header.
 */
import { describe, expect, it } from 'vitest';
import { FrameGuard, MAX_MESSAGE } from '../server/lsp/frame-guard.js';

const frame = (body: string) => `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;

/** What the guard passes on for `input` written in chunks of the given sizes (cycled). */
async function through(input: Buffer | string, sizes = [input.length]): Promise<{ out: string; dropped: number }> {
  const g = new FrameGuard();
  const chunks: Buffer[] = [];
  g.on('data', (c: Buffer) => chunks.push(c));
  const b = Buffer.isBuffer(input) ? input : Buffer.from(input, 'utf8');
  for (let at = 0, k = 0; at < b.length; k++) {
    const n = Math.max(1, sizes[k % sizes.length]!);
    g.write(b.subarray(at, at + n));
    at += n;
  }
  g.end();
  await new Promise((r) => g.on('end', r));
  return { out: Buffer.concat(chunks).toString('utf8'), dropped: g.dropped };
}

describe('FrameGuard', () => {
  const a = frame('{"jsonrpc":"2.0","id":1,"method":"a"}');
  const b = frame('{"jsonrpc":"2.0","id":2,"method":"b","params":{"text":"héllo ✓"}}');

  it('passes frames split at every byte and merged in one write', async () => {
    expect((await through(a + b, [1])).out).toBe(a + b);
    expect((await through(a + b, [7, 3, 50])).out).toBe(a + b);
    expect((await through(a + b)).out).toBe(a + b);
  });

  it.each([
    ['a length that is not a number', 'Content-Length: abc\r\n\r\n{}'],
    ['a negative length', 'Content-Length: -5\r\n\r\n{}'],
    ['a length over the limit', `Content-Length: ${MAX_MESSAGE + 1}\r\n\r\n{}`],
    ['a terabyte claim', 'Content-Length: 999999999999999\r\n\r\n{}'],
    ['no Content-Length', 'Content-Type: application/json\r\n\r\n{}'],
    ['a header line without a name', 'garbage\r\n\r\n'],
    // ended by a header end with no header after it: the tail kept for a partial header once looped for ever
    ['a short block without a length, then a header end', 'Content-Type: application/json\r\n\r\n{}'],
    ['binary garbage', Buffer.from(Array.from({ length: 20_000 }, (_, i) => (i * 7919) % 256)).toString('latin1')],
  ])('drops %s and resynchronises at the next header', async (_name, bad) => {
    const r = await through(a + bad + b, [5, 1000]);
    expect(r.out).toBe(a + b);
    expect(r.dropped).toBeGreaterThan(0);
  });

  it('drops a malformed frame with nothing after it, and ends', async () => {
    const r = await through(a + 'Content-Type: application/json\r\n\r\n{}', [3]);
    expect(r.out).toBe(a);
  });

  it('keeps a body that contains a header of its own, and a 10 MB body', async () => {
    const tricky = frame(JSON.stringify({ text: 'Content-Length: 5\r\n\r\nxx' }));
    expect((await through(tricky + a, [3])).out).toBe(tricky + a);
    const big = frame(JSON.stringify({ text: 'x'.repeat(10 * 1024 * 1024) }));
    expect((await through(big + a, [65536])).out).toBe(big + a);
  });
});
