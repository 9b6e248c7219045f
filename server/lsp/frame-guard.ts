/**
 * A guard in front of the JSON-RPC reader: passes on only well-formed LSP frames (`Content-Length: N` headers, a body
 * of N bytes, N at most MAX_MESSAGE) and resynchronises after a malformed one by skipping to the next
 * `Content-Length:` header, logging one line. Without it a single bad header (negative, not a number, absurdly large)
 * leaves vscode-jsonrpc's reader waiting for a body that never comes, and every message after it is lost: the
 * server looks hung to its editor. Bodies are not judged here (bad JSON gets its JSON-RPC error from the reader).
 */
import { Transform, type TransformCallback } from 'node:stream';

/** The largest message accepted (a 10 MB document with JSON escaping fits; a 1 TB length claim does not). */
export const MAX_MESSAGE = 64 * 1024 * 1024;
/** A header block longer than this is garbage, not headers. */
const MAX_HEADER = 8 * 1024;
const HEADER = Buffer.from('content-length:', 'ascii');
const END = Buffer.from('\r\n\r\n', 'ascii');

export class FrameGuard extends Transform {
  private buf: Buffer = Buffer.alloc(0);
  /** Bytes of the current frame's body still to come, or -1 while reading headers. */
  private need = -1;
  private header: Buffer = Buffer.alloc(0);
  /** Frames dropped as malformed (for tests and the log). */
  dropped = 0;

  constructor(private readonly log: (line: string) => void = () => {}) {
    super();
  }

  /** A body's chunks while it is still incomplete (joined once: a 10 MB body comes in a hundred chunks). */
  private parts: Buffer[] = [];
  private have = 0;

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    if (this.need >= 0 && this.have + chunk.length < this.need) {
      this.parts.push(chunk);
      this.have += chunk.length;
      return done();
    }
    this.parts.push(chunk);
    this.buf = Buffer.concat(this.parts);
    this.parts = [];
    this.have = 0;
    this.drain();
    if (this.buf.length) {
      this.parts.push(this.buf);
      this.have = this.buf.length;
    }
    done();
  }

  private drain(): void {
    for (;;) {
      if (this.need >= 0) {
        if (this.buf.length < this.need) return;
        this.push(Buffer.concat([this.header, this.buf.subarray(0, this.need)]));
        this.buf = this.buf.subarray(this.need);
        this.need = -1;
        continue;
      }
      const end = this.buf.indexOf(END);
      if (end < 0) {
        if (this.buf.length > MAX_HEADER) this.resync('a header block without an end');
        else return;
        continue;
      }
      const length = contentLength(this.buf.subarray(0, end).toString('latin1'));
      if (typeof length === 'string') {
        this.resync(length);
        continue;
      }
      this.header = Buffer.from(`Content-Length: ${length}\r\n\r\n`, 'ascii');
      this.buf = this.buf.subarray(end + END.length);
      this.need = length;
    }
  }

  /** Drops bytes up to the next `Content-Length:` header after the start (or all but a possible partial one). */
  private resync(why: string): void {
    this.dropped++;
    this.log(`mgd: dropped a malformed LSP frame (${why})`);
    const next = indexOfHeader(this.buf, 1);
    // (at least one byte always goes, so a resync can never find the same bytes again)
    this.buf = next < 0 ? this.buf.subarray(Math.max(1, this.buf.length - HEADER.length + 1)) : this.buf.subarray(next);
  }
}

/** The header block's Content-Length, or why it has none that can be trusted. */
function contentLength(block: string): number | string {
  let length: number | null = null;
  for (const line of block.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon <= 0) return `a header line without a name: ${JSON.stringify(line.slice(0, 40))}`;
    if (line.slice(0, colon).trim().toLowerCase() !== 'content-length') continue;
    const v = line.slice(colon + 1).trim();
    if (!/^\d{1,12}$/.test(v)) return `Content-Length ${JSON.stringify(v.slice(0, 20))} is not a length`;
    length = Number(v);
  }
  if (length === null) return 'no Content-Length header';
  if (length > MAX_MESSAGE) return `Content-Length ${length} is over ${MAX_MESSAGE}`;
  return length;
}

/** The next `Content-Length:` (any case) at or after `from`, -1 if none. */
function indexOfHeader(buf: Buffer, from: number): number {
  for (let i = from; i + HEADER.length <= buf.length; i++) {
    if ((buf[i]! | 0x20) !== HEADER[0]) continue;
    let ok = true;
    for (let j = 1; j < HEADER.length && ok; j++) ok = (buf[i + j]! | 0x20) === (HEADER[j]! | 0x20);
    if (ok) return i;
  }
  return -1;
}
