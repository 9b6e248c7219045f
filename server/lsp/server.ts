/**
 * The language server: wires the LSP connection to the features (one file each) and the completion runner.
 * Only server/ knows LSP; everything below is the engine API.
 */
import { fileURLToPath } from 'node:url';
import { ErrorCodes, InlineCompletionRequest, ResponseError, TextDocumentSyncKind, TextDocuments, type Connection } from 'vscode-languageserver';
import { TextDocument } from 'vscode-languageserver-textdocument';
import { MONITOR_KINDS, type EngineOptions, type MonitorKind } from '../../engine/engine.js';
import { completion } from './completion.js';
import { CompletionRunner } from './completion-runner.js';
import { inlineCompletion } from './inline-completion.js';
import type { RemoteBackendOptions } from './remote-completions.js';

export function startLspServer(connection: Connection, engineOptions: EngineOptions, remote?: RemoteBackendOptions): void {
  const documents = new TextDocuments(TextDocument);
  const runner = new CompletionRunner(engineOptions, (m) => connection.console.log(m), remote);

  let canPullConfig = false;
  let canShowProgress = false;
  connection.onInitialize((params) => {
    canPullConfig = params.capabilities.workspace?.configuration === true;
    canShowProgress = params.capabilities.window?.workDoneProgress === true;
    const folder = params.workspaceFolders?.[0]?.uri ?? params.rootUri;
    if (folder?.startsWith('file:')) runner.workspace = fileURLToPath(folder);
    applySettings(runner, params.initializationOptions);
    return {
      capabilities: {
        textDocumentSync: TextDocumentSyncKind.Incremental,
        inlineCompletionProvider: true,
        completionProvider: { triggerCharacters: ['.'], resolveProvider: false },
        workspace: { workspaceFolders: { supported: true } },
      },
      serverInfo: { name: 'mgd', version: '0.1.0' },
    };
  });
  connection.onInitialized(async () => {
    // load the model in the background: the first request waits for it, nothing else does
    // (asked before the first await: a didOpen's prefetch may start the load meanwhile)
    const pulling = !runner.servingEngine && runner.pullPending();
    const progress = canShowProgress ? await connection.window.createWorkDoneProgress().catch(() => null) : null;
    progress?.begin('mgd', pulling ? 0 : undefined, runner.servingEngine ? 'connecting to the serving engine' : pulling ? 'pulling the model' : 'loading the model');
    // with a serving engine the local model loads only if the engine fails
    // (a model id not in the Hugging Face cache is pulled first, its progress reported here)
    runner.onPull = (percent, message) => progress?.report(percent, message);
    void (runner.servingEngine ? runner.warmUpRemote() : runner.load()).then(() => progress?.done());
    if (canPullConfig) {
      const settings = await connection.workspace.getConfiguration('mgd').catch(() => null);
      applySettings(runner, settings);
    }
  });
  connection.onDidChangeConfiguration((change) => applySettings(runner, (change.settings as { mgd?: unknown } | null)?.mgd ?? change.settings));
  // the client reports what the user accepted (kept locally, never sent anywhere)
  connection.onNotification('mgd/didAccept', (p: { kind?: unknown }) => {
    if (p?.kind === 'partial') runner.stats.acceptedPartial++;
    else runner.stats.accepted++;
  });
  // after shutdown a request is an error (LSP: InvalidRequest), not an answer from an engine being disposed
  let shutDown = false;
  const open = () => {
    if (shutDown) throw new ResponseError(ErrorCodes.InvalidRequest, 'the server is shutting down');
  };
  connection.onRequest(InlineCompletionRequest.type, (params, token) => (open(), inlineCompletion(documents, runner, params, token)));
  connection.onCompletion((params, token) => (open(), completion(documents, runner, params, token)));
  // mgd/stats: counters of this session and the KV cache's (kept locally, never sent anywhere)
  connection.onRequest('mgd/stats', () => (open(), runner.statistics()));
  connection.onShutdown(() => {
    shutDown = true;
    return runner.dispose();
  });
  // Background prefill of what a completion in a document will need: on open, and when the client says the user
  // focused a document (mgd/didFocus {textDocument, position?}, sent by our extension on editor switches).
  documents.onDidOpen((e) => void runner.prefetch(e.document));
  connection.onNotification('mgd/didFocus', (p: { textDocument?: { uri?: unknown }; position?: { line?: unknown; character?: unknown } }) => {
    const doc = typeof p?.textDocument?.uri === 'string' ? documents.get(p.textDocument.uri) : undefined;
    if (!doc) return; // unknown or closed document: nothing to prepare
    const pos = p.position;
    const valid = pos && Number.isInteger(pos.line) && Number.isInteger(pos.character) && (pos.line as number) >= 0 && (pos.character as number) >= 0;
    void runner.prefetch(doc, valid ? { line: pos.line as number, character: pos.character as number } : undefined);
  });

  documents.listen(connection);
  connection.listen();
}

/** The most repository-context tokens the `contextTokens` setting takes. */
export const MAX_CONTEXT_TOKENS = 8192;

/**
 * Settings from initializationOptions, workspace/configuration or didChangeConfiguration; a setting left out keeps its
 * value, an invalid one is ignored. `model` (a path or a Hugging Face id) is read before the model loads (see
 * CompletionRunner.useModel). `monitorKinds` is taken whole: kinds it does not name are on, unknown kinds are
 * ignored. `contextTokens`: 0..8192, or null for the engine's default.
 */
export function applySettings(runner: CompletionRunner, raw: unknown): void {
  if (typeof raw !== 'object' || raw === null) return;
  const s = raw as { model?: unknown; maxTokens?: unknown; monitors?: unknown; monitorKinds?: unknown; contextTokens?: unknown };
  if (typeof s.model === 'string' && s.model.trim() !== '') runner.useModel(s.model.trim());
  if (typeof s.maxTokens === 'number' && Number.isInteger(s.maxTokens) && s.maxTokens >= 1 && s.maxTokens <= 512) runner.settings.maxTokens = s.maxTokens;
  if (typeof s.monitors === 'boolean') runner.settings.monitors = s.monitors;
  if (typeof s.monitorKinds === 'object' && s.monitorKinds !== null && !Array.isArray(s.monitorKinds)) {
    const given = s.monitorKinds as Record<string, unknown>;
    runner.settings.monitorKinds = Object.fromEntries(MONITOR_KINDS.map((k) => [k, given[k] !== false])) as Record<MonitorKind, boolean>;
  }
  const ct = s.contextTokens;
  if (ct === null || (typeof ct === 'number' && Number.isInteger(ct) && ct >= 0 && ct <= MAX_CONTEXT_TOKENS)) runner.settings.contextTokens = ct;
}
