/**
 * The generic type oracle: any language server, over LSP (the approach of microsoft/multilspy). We start the server
 * the user configured (pyright for Python ships with us; gopls, rust-analyzer, jdtls, clangd work when installed),
 * keep the document being completed open in it as a shadow (didOpen once, then incremental didChange), and ask
 * textDocument/completion after a `.` and textDocument/signatureHelp after a `(`.
 *
 * A language server is another process and can be slow, hang or crash. Every request has a timeout; a failure is
 * thrown (the monitor counts it and decodes on unmonitored); a crashed or hung server is restarted on a later
 * question, with exponential backoff, so a server that cannot start costs one failed spawn per backoff period and
 * nothing else.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import {
  CancellationTokenSource,
  CompletionRequest,
  CompletionTriggerKind,
  DidChangeConfigurationNotification,
  DidChangeTextDocumentNotification,
  DiagnosticSeverity,
  DidOpenTextDocumentNotification,
  DocumentDiagnosticRequest,
  ExitNotification,
  InitializedNotification,
  InitializeRequest,
  ShutdownRequest,
  SignatureHelpRequest,
  SignatureHelpTriggerKind,
  TextDocumentSyncKind,
  TypeDefinitionRequest,
  createProtocolConnection,
  type CompletionItem,
  type CompletionList,
  type DocumentDiagnosticReport,
  type Location,
  type LocationLink,
  type SignatureHelp,
  type InitializeResult,
  type ProtocolConnection,
  type ServerCapabilities,
} from 'vscode-languageserver-protocol/node';
import { isLibraryFile, shapeOfSignatures, type CallShape, type CheckDiagnostic, type TypeLocation, type TypeOracle } from './oracle.js';
import { diffRange, positionAt } from './text-edit.js';

export interface LanguageServerConfig {
  /** For logs and JSON (default: the executable's name). */
  name?: string;
  /** The LSP languageId of the documents (didOpen). */
  languageId: string;
  /** Per-extension languageIds where one server serves several (tsgo: .tsx is typescriptreact, .js javascript). */
  languageIds?: Record<string, string>;
  /** The server's argv: executable, then arguments (e.g. ['gopls'] or ['pyright-langserver', '--stdio']). */
  command: string[];
  /** File extensions this server answers for, with the dot. */
  extensions: string[];
  initializationOptions?: unknown;
  /** Answers to workspace/configuration by section (dotted paths are looked up inside), and didChangeConfiguration. */
  settings?: Record<string, unknown>;
  /**
   * Take lists flagged isIncomplete as complete. Off by default: an incomplete list may leave out legal members, so
   * it means no constraint. Pyright flags every list incomplete (so that clients re-ask as the user types) while its
   * member lists are whole, hence on in its configuration.
   */
  trustIncompleteLists?: boolean;
  /** Milliseconds per question once the server is up (default 3,000). */
  timeoutMs?: number;
  /** Milliseconds for the server to start and answer its first question, which often indexes (default 30,000). */
  startupTimeoutMs?: number;
  /** First wait before restarting a crashed or hung server; doubles per failure up to a minute (default 1,000). */
  restartBackoffMs?: number;
}

// Completion item kinds that are not names after a dot: plain words and snippets (rust-analyzer's `.if`, `.match`).
const KIND_TEXT = 1;
const KIND_SNIPPET = 15;
const NAME = /^[\p{L}_$][\p{L}\p{N}_$]*/u;
const MAX_BACKOFF_MS = 60_000;

interface Running {
  proc: ChildProcess;
  conn: ProtocolConnection;
  capabilities: ServerCapabilities;
  /** Rejects when the process goes away: every pending request races it. */
  died: Promise<never>;
  /** uri -> the version and text the server has */
  docs: Map<string, { version: number; text: string }>;
  /** Whether the server has answered a question yet (the first one gets the startup timeout). */
  warm: boolean;
}

export class LspOracle implements TypeOracle {
  readonly name: string;
  private running: Promise<Running> | null = null;
  private failures = 0;
  private retryAt = 0;
  private consecutiveTimeouts = 0;
  private disposed = false;

  constructor(
    readonly workspace: string,
    readonly config: LanguageServerConfig,
    private readonly log: (message: string) => void = () => {},
  ) {
    if (config.command.length === 0) throw new Error('language server configuration: empty command');
    this.name = `lsp:${config.name ?? path.basename(config.command[0]!)}`;
  }

  handles(file: string): boolean {
    return this.config.extensions.includes(path.extname(file).toLowerCase());
  }

  async members(file: string, text: string, offset: number): Promise<string[] | null> {
    // only after a dot: elsewhere servers answer with everything in scope, which is not a member list
    if (text[offset - 1] !== '.') return null;
    const server = await this.server();
    const uri = await this.sync(server, file, text);
    const dotTrigger = server.capabilities.completionProvider?.triggerCharacters?.includes('.');
    const result = await this.request<CompletionItem[] | CompletionList | null>(server, CompletionRequest.method, {
      textDocument: { uri },
      position: positionAt(text, offset),
      context: dotTrigger ? { triggerKind: CompletionTriggerKind.TriggerCharacter, triggerCharacter: '.' } : { triggerKind: CompletionTriggerKind.Invoked },
    });
    if (!result) return null;
    // An incomplete list may leave out legal members: no opinion rather than a wrong constraint.
    if (!Array.isArray(result) && result.isIncomplete && !this.config.trustIncompleteLists) return null;
    const items: CompletionItem[] = Array.isArray(result) ? result : result.items;
    const names = new Set<string>();
    for (const item of items) {
      if (item.kind === KIND_TEXT || item.kind === KIND_SNIPPET) continue;
      const name = NAME.exec(item.filterText ?? item.label)?.[0];
      if (name) names.add(name);
    }
    return names.size ? [...names].sort() : null;
  }

  async callShape(file: string, text: string, offset: number): Promise<CallShape | null> {
    const server = await this.server();
    if (!server.capabilities.signatureHelpProvider) return null;
    const uri = await this.sync(server, file, text);
    const help = await this.request<SignatureHelp | null>(server, SignatureHelpRequest.method, {
      textDocument: { uri },
      position: positionAt(text, offset),
      context: { triggerKind: SignatureHelpTriggerKind.TriggerCharacter, triggerCharacter: '(', isRetrigger: false },
    });
    if (!help || help.signatures.length === 0 || (help.activeParameter ?? 0) !== 0) return null;
    return shapeOfSignatures(
      help.signatures.map((s) => ({
        parameters: (s.parameters ?? []).map((p) => (typeof p.label === 'string' ? p.label : s.label.slice(p.label[0], p.label[1]))),
      })),
    );
  }

  async typeDefinitions(file: string, text: string, offset: number): Promise<TypeLocation[] | null> {
    const server = await this.server();
    if (!server.capabilities.typeDefinitionProvider) return null;
    const uri = await this.sync(server, file, text);
    // on the receiver's last character, not after it: at the `.` servers answer for nothing or for the next token
    const answer = await this.request<Location | Location[] | LocationLink[] | null>(server, TypeDefinitionRequest.method, {
      textDocument: { uri },
      position: positionAt(text, Math.max(0, offset - 1)),
    });
    if (!answer) return null;
    const out: TypeLocation[] = [];
    for (const l of Array.isArray(answer) ? answer : [answer]) {
      const target = 'targetUri' in l ? l.targetUri : l.uri;
      const range = 'targetUri' in l ? (l.targetSelectionRange ?? l.targetRange) : l.range;
      if (!target.startsWith('file:')) continue;
      const abs = fileURLToPath(target);
      if (isLibraryFile(abs)) continue;
      out.push({ file: abs, line: range.start.line });
    }
    return out.length ? out : null;
  }

  /**
   * The server's diagnostics of the shadow document (LSP pull diagnostics), as numeric code and message; null when
   * the server does not offer them. The verifier's full check where the server is faster than typescript@6 in
   * process (tsgo: a new program per edit, checked in Go).
   */
  async errors(file: string, text: string): Promise<CheckDiagnostic[] | null> {
    const server = await this.server();
    if (!server.capabilities.diagnosticProvider) return null;
    const uri = await this.sync(server, file, text);
    const report = await this.request<DocumentDiagnosticReport>(server, DocumentDiagnosticRequest.method, { textDocument: { uri } });
    if (report.kind !== 'full') return null; // 'unchanged' needs a previous result id, which is never sent
    // errors only: hints (unused names, deprecations) are not what a suggestion must avoid
    return report.items.filter((d) => (d.severity ?? DiagnosticSeverity.Error) === DiagnosticSeverity.Error).map((d) => ({ code: typeof d.code === 'number' ? d.code : Number(d.code ?? 0), message: typeof d.message === 'string' ? d.message : d.message.value }));
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    const running = this.running;
    this.running = null;
    if (!running) return;
    let server: Running;
    try {
      server = await running;
    } catch {
      return;
    }
    try {
      await Promise.race([server.conn.sendRequest(ShutdownRequest.method), server.died, delay(1000)]);
      await server.conn.sendNotification(ExitNotification.type);
    } catch {
      // it is going away either way
    }
    setTimeout(() => server.proc.kill('SIGKILL'), 1000).unref();
    server.conn.dispose();
  }

  /** The running server, started (or restarted after its backoff) on demand. */
  private server(): Promise<Running> {
    if (this.disposed) return Promise.reject(new Error(`${this.name}: disposed`));
    if (this.running) return this.running;
    const wait = this.retryAt - Date.now();
    if (wait > 0) return Promise.reject(new Error(`${this.name} is down; next start in ${Math.ceil(wait / 1000)} s`));
    const starting = this.start();
    this.running = starting;
    starting.catch((e) => this.down(starting, `could not start: ${(e as Error).message}`));
    return starting;
  }

  private async start(): Promise<Running> {
    const [exe, ...args] = this.config.command;
    const proc = spawn(exe!, args, { cwd: this.workspace, stdio: ['pipe', 'pipe', 'pipe'] });
    let stderrTail = '';
    proc.stderr!.on('data', (d: Buffer) => {
      stderrTail = (stderrTail + d.toString()).slice(-2000);
    });
    // A server that exits (or cannot be spawned) fails every request in flight, once.
    let died!: (e: Error) => void;
    const diedPromise = new Promise<never>((_, reject) => (died = reject));
    diedPromise.catch(() => {});
    proc.on('error', (e) => died(new Error(`${this.name}: ${e.message}`)));
    proc.on('exit', (code, signal) => {
      const last = stderrTail.trim().split('\n').pop();
      died(new Error(`${this.name} exited (${signal ?? `code ${code}`})${last ? `: ${last}` : ''}`));
    });
    // EPIPE when the server dies mid-write would otherwise be an uncaught stream error
    proc.stdin!.on('error', () => {});
    const conn = createProtocolConnection(proc.stdout!, proc.stdin!);
    const settings = this.config.settings ?? {};
    conn.onRequest('workspace/configuration', (params: { items: { section?: string }[] }) => params.items.map((i) => lookupSection(settings, i.section)));
    conn.onRequest('client/registerCapability', () => null);
    conn.onRequest('client/unregisterCapability', () => null);
    conn.onRequest('window/workDoneProgress/create', () => null);
    conn.onRequest('workspace/workspaceFolders', () => [{ uri: pathToFileURL(this.workspace).href, name: path.basename(this.workspace) }]);
    conn.onUnhandledNotification(() => {}); // diagnostics, progress, logs: not our business
    conn.listen();
    diedPromise.catch(() => conn.dispose());

    const rootUri = pathToFileURL(this.workspace).href;
    const init = await this.raceTimeout(
      conn.sendRequest(InitializeRequest.type, {
        processId: process.pid,
        rootUri,
        workspaceFolders: [{ uri: rootUri, name: path.basename(this.workspace) }],
        initializationOptions: this.config.initializationOptions,
        capabilities: {
          textDocument: {
            synchronization: { dynamicRegistration: false, didSave: false },
            completion: { completionItem: { snippetSupport: false }, contextSupport: true },
            signatureHelp: { signatureInformation: { parameterInformation: { labelOffsetSupport: true } }, contextSupport: true },
            diagnostic: { dynamicRegistration: false, relatedDocumentSupport: false },
          },
          workspace: { configuration: true, workspaceFolders: true },
        },
      }),
      diedPromise,
      this.config.startupTimeoutMs ?? 30_000,
      'initialize',
    ).catch((e) => {
      proc.kill('SIGKILL');
      throw e;
    });
    await conn.sendNotification(InitializedNotification.type, {});
    if (this.config.settings) await conn.sendNotification(DidChangeConfigurationNotification.type, { settings: this.config.settings });
    this.log(`${this.name} started for ${this.workspace}`);
    return { proc, conn, capabilities: (init as InitializeResult).capabilities, died: diedPromise, docs: new Map(), warm: false };
  }

  /** Marks the server down after a crash or a hang: kill it and back off before the next start. */
  private down(which: Promise<Running>, why: string): void {
    if (this.running !== which) return; // already replaced
    this.running = null;
    this.failures++;
    const backoff = Math.min(MAX_BACKOFF_MS, (this.config.restartBackoffMs ?? 1000) * 2 ** (this.failures - 1));
    this.retryAt = Date.now() + backoff;
    this.consecutiveTimeouts = 0;
    which.then((s) => s.proc.kill('SIGKILL'), () => {});
    this.log(`${this.name} ${why}; completing without its analysis, next start in ${backoff / 1000} s`);
  }

  /** Brings the server's copy of the shadow document to `text`, incrementally where the server allows. */
  private async sync(server: Running, file: string, text: string): Promise<string> {
    const uri = pathToFileURL(path.resolve(this.workspace, file)).href;
    const doc = server.docs.get(uri);
    if (!doc) {
      server.docs.set(uri, { version: 1, text });
      const languageId = this.config.languageIds?.[path.extname(file).toLowerCase()] ?? this.config.languageId;
      await server.conn.sendNotification(DidOpenTextDocumentNotification.type, { textDocument: { uri, languageId, version: 1, text } });
      return uri;
    }
    if (doc.text === text) return uri;
    const sync = server.capabilities.textDocumentSync;
    const kind = typeof sync === 'number' ? sync : sync?.change;
    const version = doc.version + 1;
    if (kind === TextDocumentSyncKind.Incremental) {
      const { start, oldEnd, newEnd } = diffRange(doc.text, text);
      await server.conn.sendNotification(DidChangeTextDocumentNotification.type, {
        textDocument: { uri, version },
        contentChanges: [{ range: { start: positionAt(doc.text, start), end: positionAt(doc.text, oldEnd) }, text: text.slice(start, newEnd) }],
      });
    } else {
      await server.conn.sendNotification(DidChangeTextDocumentNotification.type, { textDocument: { uri, version }, contentChanges: [{ text }] });
    }
    server.docs.set(uri, { version, text });
    return uri;
  }

  private async request<R>(server: Running, method: string, params: unknown): Promise<R> {
    const timeout = server.warm ? (this.config.timeoutMs ?? 3000) : (this.config.startupTimeoutMs ?? 30_000);
    const cancel = new CancellationTokenSource();
    try {
      const answer = await this.raceTimeout(server.conn.sendRequest(method, params, cancel.token) as Promise<R>, server.died, timeout, method, () => cancel.cancel());
      server.warm = true;
      this.consecutiveTimeouts = 0;
      this.failures = 0;
      return answer;
    } catch (e) {
      const running = this.running;
      if (running && (e as Error).name === 'TimeoutError') {
        // one slow answer happens; two in a row is a hung server
        if (++this.consecutiveTimeouts >= 2) this.down(running, `did not answer twice in a row (${timeout} ms)`);
      } else if (running && !(e instanceof Error && /Request cancelled/i.test(e.message))) {
        server.died.catch((d: Error) => this.down(running, d.message));
      }
      throw e;
    } finally {
      cancel.dispose();
    }
  }

  private async raceTimeout<T>(work: Promise<T>, died: Promise<never>, ms: number, what: string, onTimeout?: () => void): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        onTimeout?.();
        const e = new Error(`${this.name} did not answer ${what} within ${ms} ms`);
        e.name = 'TimeoutError';
        reject(e);
      }, ms);
    });
    try {
      return await Promise.race([work, died, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}

/** `python.analysis` in { python: { analysis: {...} } } or under the literal key. */
function lookupSection(settings: Record<string, unknown>, section: string | undefined): unknown {
  if (!section) return settings;
  if (section in settings) return settings[section];
  let v: unknown = settings;
  for (const part of section.split('.')) {
    if (!v || typeof v !== 'object') return null;
    v = (v as Record<string, unknown>)[part];
  }
  return v ?? null;
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}
