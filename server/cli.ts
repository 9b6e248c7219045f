/**
 * `mgd`: the command line. A thin door into the engine: parse arguments, call engine/, print text or JSON.
 * Errors: one line on stderr; exit 2 for bad input (the user's mistake), 1 for internal failures; the stack only with
 * --verbose.
 */
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { Engine, type EngineOptions } from '../engine/engine.js';
import { BadInputError, oneLine } from '../engine/errors.js';
import { openModelDir } from '../engine/model/directory.js';
import { makeRandomModel, type RandomModelPreset, RANDOM_MODEL_PRESETS } from '../engine/model/make-random.js';
import type { WeightFormat } from '../engine/backends/backend.js';
import { benchDecode } from '../engine/bench/decode.js';
import { benchMask } from '../engine/bench/mask.js';
import { benchOracle } from '../engine/bench/oracle.js';
import { offsetAt } from '../engine/text/position.js';
import { packageRoot } from '../engine/paths.js';
import type { StopMode } from '../engine/decode/stop.js';
import { parseLanguageServerSpec } from '../engine/analysis/language-servers.js';
import type { LanguageServerConfig } from '../engine/analysis/lsp-oracle.js';
import type { RemoteBackendOptions } from './lsp/remote-completions.js';

const USAGE = `usage:
  mgd complete <file> --line L --character C [--workspace DIR] [--model MODEL] [--backend onnx|webgpu|auto]
               [--weights f32|f16|q8|q4] [--threads N] [--max-tokens N] [--stop line|block|none]
               [--temperature T] [--seed S] [--no-monitors] [--no-context] [--no-verify] [--verify-ms N]
               [--language-server LANG=CMD ...] [--typescript native|in-process] [--json] [--verbose]
  mgd complete <file> ... --backend remote --engine vllm|sglang|llamacpp --url URL [--token T] [--model DIR (its tokenizer)]
  mgd serve --stdio | --socket PORT | --pipe NAME [--model MODEL] [--backend onnx|webgpu|auto] [--weights f32|f16|q8|q4] [--threads N]
               [--language-server LANG=CMD ...] [--typescript native|in-process] [--no-persist-cache]
               (--socket/--pipe: connect to the LSP client listening there, as VS Code's client starts servers)
  mgd serve --stdio | --socket PORT | --pipe NAME --backend remote --engine vllm|sglang|llamacpp --url URL
               [--remote-token T] [--model DIR (the served model's tokenizer; the local fallback)]
  mgd serve --http [--host 127.0.0.1] [--port 8765] [--token T] [--workspace DIR] [--model DIR] [--weights ...]
               [--allow-origin ORIGIN ...] [--no-persist-cache]
               (refuses requests whose Host is not the address served, and requests from web pages unless
               --allow-origin names the page's exact origin, e.g. https://app.example; repeatable)
  MODEL: a Hugging Face directory, ORG/NAME[@REV] (its Hugging Face cache snapshot), a .gguf file (llama.cpp,
               LM Studio), or ollama:NAME[:TAG] (the GGUF Ollama keeps); default: the embedded model
  mgd model info MODEL [--json]
  mgd model pull ORG/NAME [--revision R] [--json]   (into the Hugging Face cache, resumable, sha256-checked;
               --json: the result on stdout, progress as JSON lines on stderr)
  mgd model list [--json]   (models in the Hugging Face cache and Ollama's store, and their size)
  mgd model make-random --like ${RANDOM_MODEL_PRESETS.join('|')} --out DIR [--seed S] [--dtype f32|f16|bf16]
  mgd model export-gguf MODEL --out FILE [--type f32|f16|bf16|q8_0|q4_0|q4_1|q5_0|q5_1|q4_k_m|q5_k_m]
  mgd bench decode [--model DIR | --like PRESET] [--backend onnx|webgpu|auto] [--weights f32|f16|q8|q4] [--threads N]
               [--prompt-tokens N] [--decode-tokens N] [--json]   (f16 weights: webgpu only; webgpu adds device GEMV figures)
  mgd bench decode --peer llamacpp [--model DIR | --like PRESET] [--weights f32|q8] [--rounds N] ...   (ours vs llama.cpp, same weights)
  mgd bench mask [--steps N] [--model DIR] [--json]
  mgd bench cache [--model DIR] [--keystrokes N] [--context-tokens N] [--threads N] [--json]
  mgd bench oracle [--files N] [--queries N] [--language-server typescript=CMD] [--json]
  mgd bench latency [--model DIR] [--file F] [--keystrokes N] [--interval-ms N] [--json]
  mgd bench index [--files N] [--max-files N] [--json]   (the repository index on a large, hostile generated workspace)
  mgd bench soak [--model DIR] [--completions N] [--documents D] [--seed S] [--json]   (memory, descriptors, children over a long session)
  mgd bench fuzz [--door lsp|http|both] [--inputs N] [--seed S] [--batch N] [--model DIR] [--json]   (hostile input; exit 1 if a door failed)
  mgd bench ui [--triggers N] [--pause MS]   (keystroke to visible ghost text in VS Code (code-server), JSON)
  mgd eval make-dots --package NAME@VERSION [--package ...] --out FILE [--limit N] [--seed S]
  mgd eval dots TASKS.jsonl [--no-monitors] [--no-context] [--no-verify] [--model DIR] [--samples k] [--limit N] [--jobs N] [--json] [--markdown FILE]
  mgd eval report TASKS.jsonl --out FILE.md --svg FILE.svg [--model DIR] [--limit N] [--jobs N]`;

const mb = (bytes: number) => (bytes / 1e6).toFixed(1);

type Out = { stdout: (s: string) => void; stderr: (s: string) => void };
const defaultOut: Out = { stdout: (s) => process.stdout.write(s), stderr: (s) => process.stderr.write(s) };

export async function main(argv: string[], out: Out = defaultOut): Promise<number> {
  const verbose = argv.includes('--verbose');
  try {
    const [cmd, ...rest] = argv;
    switch (cmd) {
      case 'complete':
        return await complete(rest, out);
      case 'model':
        return await model(rest, out);
      case 'bench':
        return await bench(rest, out);
      case 'serve':
        return await serve(rest);
      case 'eval':
        return await (await import('./eval-cli.js')).evalCommand(rest, out);
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        out.stdout(USAGE + '\n');
        return cmd === undefined ? 2 : 0;
      default:
        throw new BadInputError(`unknown command "${cmd}" (try: mgd --help)`);
    }
  } catch (e) {
    const bad = e instanceof BadInputError || isArgError(e);
    out.stderr(`mgd: ${bad ? '' : 'internal error: '}${oneLine(e)}\n`);
    if (verbose && e instanceof Error && e.stack) out.stderr(e.stack + '\n');
    return bad ? 2 : 1;
  }
}

function isArgError(e: unknown): boolean {
  return typeof e === 'object' && e !== null && 'code' in e && String((e as { code: unknown }).code).startsWith('ERR_PARSE_ARGS');
}

function parse<T extends ParseArgsConfig['options']>(args: string[], options: T) {
  return parseArgs({ args, options: { ...options, verbose: { type: 'boolean' }, json: { type: 'boolean' } }, allowPositionals: true, strict: true });
}

function int(v: string | undefined, name: string, min: number, fallback?: number): number {
  if (v === undefined) {
    if (fallback !== undefined) return fallback;
    throw new BadInputError(`--${name} is required`);
  }
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new BadInputError(`--${name} must be an integer >= ${min}, got "${v}"`);
  return n;
}

function oneOf<T extends string>(v: string | undefined, name: string, allowed: readonly T[], fallback: T): T {
  if (v === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(v)) throw new BadInputError(`--${name} must be one of ${allowed.join(', ')}, got "${v}"`);
  return v as T;
}

// f16 runs on the webgpu backend only; the onnx path refuses it with a one-line error (engine/backends/select.ts)
const WEIGHTS = ['f32', 'f16', 'q8', 'q4'] as const satisfies readonly WeightFormat[];
const TYPESCRIPT_ORACLES = ['native', 'in-process'] as const;

/** `--language-server python=pyright-langserver --stdio` (repeatable) -> configurations by language. */
function languageServers(specs: string[] | undefined): Record<string, LanguageServerConfig> | undefined {
  if (!specs?.length) return undefined;
  const servers: Record<string, LanguageServerConfig> = {};
  for (const spec of specs) {
    try {
      const [language, config] = parseLanguageServerSpec(spec);
      servers[language] = config;
    } catch (e) {
      throw new BadInputError(oneLine(e));
    }
  }
  return servers;
}

async function complete(args: string[], out: Out): Promise<number> {
  const { values, positionals } = parse(args, {
    line: { type: 'string' },
    character: { type: 'string' },
    workspace: { type: 'string' },
    model: { type: 'string' },
    backend: { type: 'string' },
    weights: { type: 'string' },
    threads: { type: 'string' },
    'max-tokens': { type: 'string' },
    stop: { type: 'string' },
    temperature: { type: 'string' },
    seed: { type: 'string' },
    'no-monitors': { type: 'boolean' },
    'no-context': { type: 'boolean' },
    'no-verify': { type: 'boolean' },
    'verify-ms': { type: 'string' },
    'language-server': { type: 'string', multiple: true },
    typescript: { type: 'string' },
    engine: { type: 'string' },
    url: { type: 'string' },
    token: { type: 'string' },
  });
  if (positionals.length !== 1) throw new BadInputError('complete takes exactly one file');
  const file = path.resolve(positionals[0]!);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new BadInputError(`cannot read ${positionals[0]}: ${(e as NodeJS.ErrnoException).code ?? oneLine(e)}`);
  }
  const line = int(values.line, 'line', 0);
  const character = int(values.character, 'character', 0);
  const offset = offsetAt(text, line, character, positionals[0]!);
  const lineEnd = text.indexOf('\n', offset);
  const temperature = values.temperature === undefined ? 0 : Number(values.temperature);
  if (!(temperature >= 0)) throw new BadInputError(`--temperature must be >= 0, got "${values.temperature}"`);

  if (values.backend === 'remote') {
    // a serving engine decodes; the member-after-dot monitor steers it segment by segment (engine/backends/remote)
    const { createRemoteEngine, REMOTE_ENGINES } = await import('../engine/backends/remote/engines.js');
    const { RemoteCompleter } = await import('../engine/backends/remote/complete.js');
    const { embeddedModelDir } = await import('../engine/paths.js');
    if (!values.engine || !values.url) throw new BadInputError(`--backend remote needs --engine ${REMOTE_ENGINES.join('|')} and --url URL`);
    const remote = createRemoteEngine({ engine: oneOf(values.engine, 'engine', REMOTE_ENGINES, 'llamacpp'), url: values.url, token: values.token });
    const completer = await RemoteCompleter.load(remote, values.model ?? embeddedModelDir(), {
      languageServers: languageServers(values['language-server']),
      typescript: oneOf(values.typescript, 'typescript', TYPESCRIPT_ORACLES, 'native'),
      monitors: !values['no-monitors'],
    });
    const workspace = path.resolve(values.workspace ?? path.dirname(file));
    try {
      const result = await completer.complete({
        prefix: text.slice(0, offset),
        suffix: lineEnd < 0 ? '' : text.slice(lineEnd),
        filePath: path.relative(workspace, file),
        workspace,
        monitors: !values['no-monitors'],
        maxTokens: int(values['max-tokens'], 'max-tokens', 1, 64),
        stop: oneOf(values.stop, 'stop', ['line', 'block', 'none'] as const, 'block'),
        temperature,
        seed: int(values.seed, 'seed', 0, 0),
      });
      out.stdout(values.json ? JSON.stringify(result) + '\n' : result.text + '\n');
      return 0;
    } finally {
      await completer.dispose();
    }
  }
  const engine = await Engine.load({
    model: values.model,
    backend: oneOf(values.backend, 'backend', ['onnx', 'webgpu', 'auto'] as const, 'auto'),
    weights: oneOf(values.weights, 'weights', WEIGHTS, 'f32'),
    threads: values.threads === undefined ? undefined : int(values.threads, 'threads', 1),
    languageServers: languageServers(values['language-server']),
    typescript: oneOf(values.typescript, 'typescript', TYPESCRIPT_ORACLES, 'native'),
  });
  // the workspace is where analysis and repository context look (default: the file's directory)
  const workspace = path.resolve(values.workspace ?? path.dirname(file));
  try {
    // one shot: index the workspace first so retrieval sees all of it (servers index in the background instead)
    if (!values['no-context']) await engine.indexWorkspace(workspace);
    const result = await engine.complete({
      prefix: text.slice(0, offset),
      // Completions fill the rest of the cursor's line: the suffix starts at the next line (design.md's task format).
      suffix: lineEnd < 0 ? '' : text.slice(lineEnd),
      filePath: path.relative(workspace, file),
      workspace,
      monitors: !values['no-monitors'],
      context: values['no-context'] ? [] : undefined,
      verify: !values['no-verify'],
      verifyMs: values['verify-ms'] === undefined ? undefined : int(values['verify-ms'], 'verify-ms', 0),
      maxTokens: int(values['max-tokens'], 'max-tokens', 1, 64),
      stop: oneOf<StopMode>(values.stop, 'stop', ['line', 'block', 'none'], 'block'),
      temperature,
      seed: int(values.seed, 'seed', 0, 0),
    });
    if (values.json) out.stdout(JSON.stringify({ ...result, model: engine.model.dir, backend: engine.backend.info }) + '\n');
    else out.stdout(result.text + '\n');
    return 0;
  } finally {
    await engine.dispose();
  }
}

async function model(args: string[], out: Out): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === 'info') {
    const { values, positionals } = parse(rest, {});
    if (positionals.length !== 1) throw new BadInputError('model info takes one model directory');
    const m = openModelDir(positionals[0]!);
    const info = { dir: m.dir, layout: m.layout, onnxFile: m.onnxFile, config: m.config, generation: m.generation };
    if (m.layout !== 'onnx') {
      const w = m.weights();
      try {
        const params = w.names().reduce((a, n) => a + w.info(n).shape.reduce((x, y) => x * y, 1), 0);
        const dtypes = [...new Set(w.names().map((n) => w.info(n).dtype))];
        Object.assign(info, { parameters: params, tensors: w.names().length, dtypes });
      } finally {
        w.close();
      }
    }
    out.stdout(values.json ? JSON.stringify(info) + '\n' : formatInfo(info) + '\n');
    return 0;
  }
  if (sub === 'pull') {
    const { values, positionals } = parse(rest, { revision: { type: 'string' } });
    if (positionals.length !== 1) throw new BadInputError('model pull takes one model id (ORG/NAME)');
    const { pullModel } = await import('../engine/model/hub.js');
    const tty = process.stderr.isTTY && !values.json;
    let last = 0;
    const r = await pullModel(positionals[0]!, {
      revision: values.revision,
      onProgress: (p) => {
        if (!p.file) return;
        if (values.json) {
          // machine-readable progress on stderr (the result stays alone on stdout): the extension's progress bar
          const now = Date.now();
          if (p.done < p.total && now - last < 250) return;
          last = now;
          process.stderr.write(JSON.stringify({ progress: true, file: p.file, done: p.done, total: p.total, files: p.files, of: p.of }) + '\n');
          return;
        }
        if (!tty && p.done < p.total) return;
        const now = Date.now();
        if (tty && p.done < p.total && now - last < 100) return;
        last = now;
        const pct = p.total ? Math.floor((p.done / p.total) * 100) : 100;
        const line = `[${p.files + 1}/${p.of}] ${p.file} ${mb(p.done)}/${mb(p.total)} MB ${pct}%`;
        if (tty) process.stderr.write(`\r${line.padEnd(78).slice(0, 78)}${p.done >= p.total ? '\n' : ''}`);
        else if (!values.json) process.stderr.write(line + '\n');
      },
    });
    out.stdout(values.json ? JSON.stringify(r) + '\n' : `${r.id}@${r.commit.slice(0, 12)} in ${r.dir}\n`);
    return 0;
  }
  if (sub === 'list') {
    const { values, positionals } = parse(rest, {});
    if (positionals.length) throw new BadInputError(`unexpected argument "${positionals[0]}"`);
    const { hubCacheDir, listCachedModels } = await import('../engine/model/hub.js');
    const { listOllamaModels, ollamaModelsDir } = await import('../engine/model/ollama.js');
    const models = listCachedModels();
    const ollama = listOllamaModels();
    if (values.json) out.stdout(JSON.stringify({ cache: hubCacheDir(), models, ollamaDir: ollamaModelsDir(), ollama }) + '\n');
    else {
      const lines = [
        ...models.map((m) => `${m.id.padEnd(48)} ${mb(m.bytes).padStart(8)} MB  ${Object.keys(m.refs).join(', ') || m.snapshots.map((s) => s.slice(0, 12)).join(', ')}`),
        ...ollama.map((m) => `${m.id.padEnd(48)} ${mb(m.bytes).padStart(8)} MB  gguf`),
      ];
      out.stdout(lines.length ? lines.join('\n') + '\n' : `no models in ${hubCacheDir()} or ${ollamaModelsDir()}\n`);
    }
    return 0;
  }
  if (sub === 'make-random') {
    const { values, positionals } = parse(rest, { like: { type: 'string' }, out: { type: 'string' }, seed: { type: 'string' }, dtype: { type: 'string' } });
    if (positionals.length) throw new BadInputError(`unexpected argument "${positionals[0]}"`);
    if (!values.out) throw new BadInputError('--out DIR is required');
    const like = oneOf<RandomModelPreset>(values.like, 'like', RANDOM_MODEL_PRESETS, 'tiny');
    if (!values.like) throw new BadInputError(`--like is required (${RANDOM_MODEL_PRESETS.join(', ')})`);
    const dtype = values.dtype === undefined ? undefined : (oneOf(values.dtype.toLowerCase(), 'dtype', ['f32', 'f16', 'bf16'] as const, 'f16').toUpperCase() as 'F32' | 'F16' | 'BF16');
    const made = makeRandomModel({ like, out: values.out, seed: int(values.seed, 'seed', 0, 0), dtype });
    out.stdout(values.json ? JSON.stringify({ dir: made.dir, parameters: made.parameters }) + '\n' : `wrote ${made.dir} (${made.parameters} parameters)\n`);
    return 0;
  }
  if (sub === 'export-gguf') {
    const { values, positionals } = parse(rest, { out: { type: 'string' }, type: { type: 'string' } });
    if (positionals.length !== 1) throw new BadInputError('model export-gguf takes one model directory');
    if (!values.out) throw new BadInputError('--out FILE is required');
    const { exportGguf, GGUF_TYPES } = await import('../engine/model/gguf.js');
    const r = exportGguf(positionals[0]!, values.out, oneOf(values.type, 'type', GGUF_TYPES, 'f32'));
    out.stdout(values.json ? JSON.stringify(r) + '\n' : `wrote ${r.file} (${r.architecture}, ${r.type}, ${r.tensors} tensors, ${r.bytes} bytes)\n`);
    return 0;
  }
  throw new BadInputError(`unknown model subcommand "${sub ?? ''}" (info, pull, list, make-random, export-gguf)`);
}

async function serve(args: string[]): Promise<number> {
  // A server outlives its mistakes: a promise some path forgot to handle is a logged line, not the end of the
  // process (Node's default). Each such line is a bug to fix where it starts; the fuzzer (bench-fuzz.ts) looks for them.
  process.on('unhandledRejection', (e) => process.stderr.write(`mgd: unhandled rejection (the server goes on): ${e instanceof Error ? (e.stack ?? e.message).split('\n').slice(0, 3).join(' | ') : String(e)}\n`));
  const { values, positionals } = parse(args, {
    stdio: { type: 'boolean' },
    socket: { type: 'string' },
    pipe: { type: 'string' },
    http: { type: 'boolean' },
    host: { type: 'string' },
    port: { type: 'string' },
    token: { type: 'string' },
    'allow-origin': { type: 'string', multiple: true },
    workspace: { type: 'string' },
    model: { type: 'string' },
    weights: { type: 'string' },
    threads: { type: 'string' },
    'language-server': { type: 'string', multiple: true },
    typescript: { type: 'string' },
    'no-persist-cache': { type: 'boolean' },
    backend: { type: 'string' },
    engine: { type: 'string' },
    url: { type: 'string' },
    'remote-token': { type: 'string' },
    // VS Code's language client adds this when it runs a server as a Node module; vscode-languageserver reads it
    // from argv itself and exits when that process is gone
    clientProcessId: { type: 'string' },
  });
  if (positionals.length) throw new BadInputError(`unexpected argument "${positionals[0]}"`);
  const transports = [values.stdio && '--stdio', values.socket !== undefined && '--socket', values.pipe !== undefined && '--pipe', values.http && '--http'].filter(Boolean);
  if (transports.length !== 1) {
    throw new BadInputError(`serve needs exactly one of --stdio, --socket PORT, --pipe NAME (LSP) or --http (HTTP API)${transports.length ? `, got ${transports.join(' and ')}` : ''}`);
  }
  if (values['allow-origin'] && !values.http) throw new BadInputError('--allow-origin is for the HTTP API (serve --http)');
  const backend = oneOf(values.backend, 'backend', ['onnx', 'webgpu', 'auto', 'remote'] as const, 'auto');
  let remote: RemoteBackendOptions | undefined;
  if (backend === 'remote') {
    const { REMOTE_ENGINES } = await import('../engine/backends/remote/engines.js');
    if (!values.engine || !values.url) throw new BadInputError(`--backend remote needs --engine ${REMOTE_ENGINES.join('|')} and --url URL`);
    if (values.http) throw new BadInputError('--backend remote serves the language server (--stdio, --socket, --pipe); the HTTP API runs the local model');
    remote = { engine: oneOf(values.engine, 'engine', REMOTE_ENGINES, 'llamacpp'), url: values.url, token: values['remote-token'] ?? process.env.MGD_REMOTE_TOKEN };
  }
  const engine: EngineOptions = {
    model: values.model,
    // the local model: the backend asked for, or (with a serving engine) the fallback when it fails
    backend: backend === 'remote' ? 'auto' : backend,
    weights: oneOf(values.weights, 'weights', WEIGHTS, 'f32'),
    threads: values.threads === undefined ? undefined : int(values.threads, 'threads', 1),
    languageServers: languageServers(values['language-server']),
    typescript: oneOf(values.typescript, 'typescript', TYPESCRIPT_ORACLES, 'native'),
    // the KV cache of what was completed survives a restart (under MGD_CACHE_DIR), unless told not to
    kvCache: { persist: !values['no-persist-cache'] },
  };
  if (values.http) {
    const { startHttpServer } = await import('./http/http-server.js');
    const srv = await startHttpServer({
      host: values.host ?? '127.0.0.1',
      port: int(values.port, 'port', 0, 8765),
      token: values.token ?? process.env.MGD_TOKEN,
      allowOrigins: values['allow-origin'] ?? [],
      workspace: values.workspace ?? process.cwd(),
      engine,
      log: (l) => process.stderr.write(l + '\n'),
    });
    return await new Promise<number>((resolve) => {
      const stop = () => void srv.close().then(() => resolve(0));
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
  }
  const { createConnection, ProposedFeatures } = await import('vscode-languageserver/node');
  const { startLspServer } = await import('./lsp/server.js');
  // --socket and --pipe as VS Code's language client means them: the client listens, the server connects to it
  let input: NodeJS.ReadableStream = process.stdin;
  let output: NodeJS.WritableStream = process.stdout;
  if (values.socket !== undefined) {
    const port = int(values.socket, 'socket', 1);
    if (port > 65535) throw new BadInputError(`--socket must be a port (1..65535), got "${values.socket}"`);
    input = output = await connectTo({ port, host: '127.0.0.1' }, `127.0.0.1:${port}`);
  } else if (values.pipe !== undefined) {
    if (!values.pipe) throw new BadInputError('--pipe needs a name (a Unix socket path, or \\\\.\\pipe\\NAME on Windows)');
    input = output = await connectTo({ path: values.pipe }, values.pipe);
  }
  // malformed frames are dropped and the reader resynchronised (frame-guard.ts); a stream that ends (the client went
  // away) ends the server, as with stdio
  const { FrameGuard } = await import('./lsp/frame-guard.js');
  const guarded = input.pipe(new FrameGuard((l) => process.stderr.write(l + '\n')));
  const connection = createConnection(ProposedFeatures.all, guarded, output);
  startLspServer(connection, engine, remote);
  // the connection keeps the process alive until the client sends exit
  return await new Promise<number>((resolve) => connection.onExit(() => resolve(0)));
}

/** Connects to a listening LSP client; a refused connection is bad input (exit 2), said in one line. */
function connectTo(where: net.NetConnectOpts, name: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection(where);
    const refused = (e: NodeJS.ErrnoException) => reject(new BadInputError(`cannot connect to the LSP client at ${name}: ${e.code ?? e.message}`));
    socket.once('error', refused);
    socket.once('connect', () => {
      // from here a failure (the client vanished) closes the socket, and a closed stream ends the server
      socket.off('error', refused).on('error', () => {});
      resolve(socket);
    });
  });
}

async function bench(args: string[], out: Out): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === 'ui') {
    // through the real editor UI (code-server + headless Chromium): the harness lives with the e2e tests, in the
    // repository checkout, not in the package the server ships in
    const script = path.join(packageRoot(), 'scripts', 'e2e', 'bench.mjs');
    if (!fs.existsSync(script)) throw new BadInputError(`mgd bench ui needs a repository checkout (${script} is missing)`);
    const { values, positionals } = parse(rest, { triggers: { type: 'string' }, pause: { type: 'string' } });
    if (positionals.length) throw new BadInputError(`unexpected argument "${positionals[0]}"`);
    const { spawnSync } = await import('node:child_process');
    const forwarded = ['--triggers', String(int(values.triggers, 'triggers', 1, 24)), '--pause', String(int(values.pause, 'pause', 0, 0))];
    const r = spawnSync(process.execPath, [script, ...forwarded], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 16 << 20 });
    out.stdout(r.stdout ?? '');
    return r.status ?? 1;
  }
  if (sub === 'mask') {
    const { values, positionals } = parse(rest, { steps: { type: 'string' }, model: { type: 'string' } });
    if (positionals.length) throw new BadInputError(`unexpected argument "${positionals[0]}"`);
    const result = await benchMask({ steps: int(values.steps, 'steps', 1, 200), model: values.model });
    out.stdout(JSON.stringify(result, null, values.json ? undefined : 2) + '\n');
    return 0;
  }
  if (sub === 'cache') {
    const { values, positionals } = parse(rest, { model: { type: 'string' }, keystrokes: { type: 'string' }, threads: { type: 'string' }, 'context-tokens': { type: 'string' } });
    if (positionals.length) throw new BadInputError(`unexpected argument "${positionals[0]}"`);
    const { benchCache } = await import('../engine/bench/cache.js');
    const result = await benchCache({
      model: values.model,
      keystrokes: int(values.keystrokes, 'keystrokes', 1, 240),
      threads: values.threads === undefined ? undefined : int(values.threads, 'threads', 1),
      contextTokens: values['context-tokens'] === undefined ? undefined : int(values['context-tokens'], 'context-tokens', 0),
      log: values.json ? undefined : (l) => process.stderr.write(l + '\n'),
    });
    out.stdout(JSON.stringify(result, null, values.json ? undefined : 2) + '\n');
    return 0;
  }
  if (sub === 'oracle') {
    const { values, positionals } = parse(rest, { files: { type: 'string' }, queries: { type: 'string' }, 'language-server': { type: 'string' } });
    if (positionals.length) throw new BadInputError(`unexpected argument "${positionals[0]}"`);
    const servers = values['language-server'] ? languageServers([values['language-server']]) : undefined;
    const result = await benchOracle({
      files: int(values.files, 'files', 2, 140),
      queries: int(values.queries, 'queries', 1, 60),
      languageServer: servers ? Object.values(servers)[0] : undefined,
    });
    out.stdout(JSON.stringify(result, null, values.json ? undefined : 2) + '\n');
    return 0;
  }
  if (sub === 'latency') {
    const { values, positionals } = parse(rest, { model: { type: 'string' }, file: { type: 'string' }, keystrokes: { type: 'string' }, 'interval-ms': { type: 'string' }, threads: { type: 'string' } });
    if (positionals.length) throw new BadInputError(`unexpected argument "${positionals[0]}"`);
    const { benchLatency } = await import('./bench-latency.js');
    const result = await benchLatency({
      engine: { model: values.model, threads: values.threads === undefined ? undefined : int(values.threads, 'threads', 1) },
      file: values.file,
      keystrokes: int(values.keystrokes, 'keystrokes', 1, 200),
      intervalMs: int(values['interval-ms'], 'interval-ms', 0, 80),
    });
    out.stdout(JSON.stringify(result, null, values.json ? undefined : 2) + '\n');
    return 0;
  }
  if (sub === 'index') {
    const { values, positionals } = parse(rest, { files: { type: 'string' }, 'max-files': { type: 'string' } });
    if (positionals.length) throw new BadInputError(`unexpected argument "${positionals[0]}"`);
    const { benchIndex } = await import('../engine/bench/index.js');
    const result = await benchIndex({ files: int(values.files, 'files', 1, 100_000), maxFiles: values['max-files'] === undefined ? undefined : int(values['max-files'], 'max-files', 1) });
    out.stdout(JSON.stringify(result, null, values.json ? undefined : 2) + '\n');
    return 0;
  }
  if (sub === 'soak') {
    const { values, positionals } = parse(rest, { model: { type: 'string' }, completions: { type: 'string' }, documents: { type: 'string' }, threads: { type: 'string' }, seed: { type: 'string' } });
    if (positionals.length) throw new BadInputError(`unexpected argument "${positionals[0]}"`);
    const { benchSoak } = await import('./bench-soak.js');
    const result = await benchSoak({
      model: values.model,
      completions: int(values.completions, 'completions', 1, 10_000),
      documents: int(values.documents, 'documents', 1, 8),
      threads: values.threads === undefined ? undefined : int(values.threads, 'threads', 1),
      seed: int(values.seed, 'seed', 0, 1),
    });
    out.stdout(JSON.stringify(result, null, values.json ? undefined : 2) + '\n');
    return 0;
  }
  if (sub === 'fuzz') {
    const { values, positionals } = parse(rest, { model: { type: 'string' }, door: { type: 'string' }, inputs: { type: 'string' }, seed: { type: 'string' }, batch: { type: 'string' }, threads: { type: 'string' } });
    if (positionals.length) throw new BadInputError(`unexpected argument "${positionals[0]}"`);
    const { benchFuzz } = await import('./bench-fuzz.js');
    const result = await benchFuzz({
      model: values.model,
      door: oneOf(values.door, 'door', ['lsp', 'http', 'both'] as const, 'both'),
      inputs: int(values.inputs, 'inputs', 1, 10_000),
      seed: int(values.seed, 'seed', 0, 1),
      batch: int(values.batch, 'batch', 1, 500),
      threads: values.threads === undefined ? undefined : int(values.threads, 'threads', 1),
      log: values.json ? undefined : (l) => process.stderr.write(l + '\n'),
    });
    out.stdout(JSON.stringify(result, null, values.json ? undefined : 2) + '\n');
    const failed = [result.lsp, result.http].some((d) => d && (d.failures.length || d.crashed || d.unhandled.length));
    return failed ? 1 : 0;
  }
  if (sub !== 'decode') throw new BadInputError(`unknown bench "${sub ?? ''}" (available: decode, mask, cache, oracle, latency, index, soak, fuzz, ui)`);
  const { values, positionals } = parse(rest, {
    model: { type: 'string' },
    like: { type: 'string' },
    backend: { type: 'string' },
    weights: { type: 'string' },
    threads: { type: 'string' },
    'prompt-tokens': { type: 'string' },
    'decode-tokens': { type: 'string' },
    peer: { type: 'string' },
    rounds: { type: 'string' },
  });
  if (positionals.length) throw new BadInputError(`unexpected argument "${positionals[0]}"`);
  if (values.model && values.like) throw new BadInputError('give --model or --like, not both');
  if (values.rounds !== undefined && values.peer === undefined) throw new BadInputError('--rounds goes with --peer (alternating rounds of both engines)');
  if (values.peer !== undefined) {
    // ours against llama.cpp on the same weights (exported to GGUF): f32 and q8 unless --weights picks one
    oneOf(values.peer, 'peer', ['llamacpp'] as const, 'llamacpp');
    const { benchDecodePeer } = await import('../engine/bench/decode-peer.js');
    const peerResult = await benchDecodePeer({
      model: values.model,
      like: values.like === undefined ? undefined : oneOf<RandomModelPreset>(values.like, 'like', RANDOM_MODEL_PRESETS, 'tiny'),
      weights: values.weights === undefined ? undefined : [oneOf(values.weights, 'weights', ['f32', 'q8'] as const, 'f32')],
      threads: values.threads === undefined ? undefined : int(values.threads, 'threads', 1),
      promptTokens: int(values['prompt-tokens'], 'prompt-tokens', 1, 128),
      decodeTokens: int(values['decode-tokens'], 'decode-tokens', 1, 32),
      rounds: int(values.rounds, 'rounds', 1, 1),
      log: (s) => out.stderr(s + '\n'),
    });
    out.stdout(JSON.stringify(peerResult, null, values.json ? undefined : 2) + '\n');
    return 0;
  }
  const result = await benchDecode({
    model: values.model,
    like: values.like === undefined ? undefined : oneOf<RandomModelPreset>(values.like, 'like', RANDOM_MODEL_PRESETS, 'tiny'),
    backend: oneOf(values.backend, 'backend', ['onnx', 'webgpu', 'auto'] as const, 'auto'),
    weights: oneOf(values.weights, 'weights', WEIGHTS, 'f32'),
    threads: values.threads === undefined ? undefined : int(values.threads, 'threads', 1),
    promptTokens: int(values['prompt-tokens'], 'prompt-tokens', 1, 128),
    decodeTokens: int(values['decode-tokens'], 'decode-tokens', 1, 32),
    log: (s) => out.stderr(s + '\n'),
  });
  out.stdout(JSON.stringify(result, null, values.json ? undefined : 2) + '\n');
  return 0;
}

function formatInfo(info: Record<string, unknown>): string {
  const c = info.config as Record<string, unknown>;
  const lines = [
    `${info.dir}`,
    `  layout        ${info.layout}${info.onnxFile ? ` (${info.onnxFile})` : ''}`,
    `  architecture  ${c.architecture}`,
    `  shape         ${c.numLayers} layers, hidden ${c.hiddenSize}, ${c.numHeads} heads / ${c.numKvHeads} kv, head ${c.headDim}, mlp ${c.intermediateSize}`,
    `  vocabulary    ${c.vocabSize}${c.tieWordEmbeddings ? ' (tied embeddings)' : ''}`,
  ];
  if (info.parameters !== undefined) lines.push(`  parameters    ${info.parameters} in ${info.tensors} tensors (${(info.dtypes as string[]).join(', ')})`);
  return lines.join('\n');
}
