// A transparent stdio tap between the extension and the mgd server, for scripts/e2e/bench.mjs: runs
// `node <args...>` (the server's command line), passes both directions through unchanged, and appends one JSON line
// per textDocument/inlineCompletion request to $MGD_E2E_TAP: its position, when it reached the server's stdin and
// when the answer left its stdout (ms, Date.now()), whether it was cancelled, and the text answered.
import { spawn } from 'node:child_process';
import fs from 'node:fs';

const out = process.env.MGD_E2E_TAP;
const child = spawn(process.execPath, process.argv.slice(2), { stdio: ['pipe', 'pipe', 'inherit'] });
const pending = new Map();
const cancelled = new Set();

/** Splits an LSP byte stream into messages and calls `on` with each parsed one. */
function frames(on) {
  let buf = Buffer.alloc(0);
  return (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    for (;;) {
      const head = buf.indexOf('\r\n\r\n');
      if (head < 0) return;
      const m = /Content-Length: *(\d+)/i.exec(buf.subarray(0, head).toString('ascii'));
      const len = m ? Number(m[1]) : 0;
      if (buf.length < head + 4 + len) return;
      const body = buf.subarray(head + 4, head + 4 + len).toString('utf8');
      buf = buf.subarray(head + 4 + len);
      try {
        on(JSON.parse(body));
      } catch {
        // not JSON: passed through anyway
      }
    }
  };
}

const fromClient = frames((msg) => {
  if (msg.method === 'textDocument/inlineCompletion') pending.set(msg.id, { at: Date.now(), position: msg.params.position, uri: msg.params.textDocument.uri });
  else if (msg.method === '$/cancelRequest') cancelled.add(msg.params.id);
});
const fromServer = frames((msg) => {
  if (msg.method !== undefined || !pending.has(msg.id)) return;
  const req = pending.get(msg.id);
  pending.delete(msg.id);
  const items = msg.result ? (Array.isArray(msg.result) ? msg.result : msg.result.items ?? []) : [];
  const record = { id: msg.id, ...req, answeredAt: Date.now(), serverMs: Date.now() - req.at, cancelled: cancelled.delete(msg.id), text: items[0]?.insertText ?? null };
  if (out) fs.appendFileSync(out, JSON.stringify(record) + '\n');
});

process.stdin.on('data', (c) => {
  fromClient(c);
  child.stdin.write(c);
});
process.stdin.on('end', () => child.stdin.end());
child.stdout.on('data', (c) => {
  fromServer(c);
  process.stdout.write(c);
});
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => child.kill(sig));
