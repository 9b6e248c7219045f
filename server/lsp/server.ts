/**
 * The language server: wires the LSP connection to the features (one file each) and the completion runner.
 * Only server/ knows LSP; everything below is the engine API.
 */
import { fileURLToPath } from 'node:url';
import { InlineCompletionRequest, TextDocumentSyncKind, TextDocuments, type Connection } from 'vscode-languageserver';
import { TextDocument } from 'vscode-languageserver-textdocument';
import type { EngineOptions } from '../../engine/engine.js';
import { completion } from './completion.js';
import { CompletionRunner } from './completion-runner.js';
import { inlineCompletion } from './inline-completion.js';

export function startLspServer(connection: Connection, engineOptions: EngineOptions): void {
  const documents = new TextDocuments(TextDocument);
  const runner = new CompletionRunner(engineOptions, (m) => connection.console.log(m));

  connection.onInitialize((params) => {
    const folder = params.workspaceFolders?.[0]?.uri ?? params.rootUri;
    if (folder?.startsWith('file:')) runner.workspace = fileURLToPath(folder);
    const init = (params.initializationOptions ?? {}) as { maxTokens?: unknown; monitors?: unknown };
    if (typeof init.maxTokens === 'number' && init.maxTokens >= 1 && init.maxTokens <= 512) runner.settings.maxTokens = Math.floor(init.maxTokens);
    if (typeof init.monitors === 'boolean') runner.settings.monitors = init.monitors;
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
  connection.onInitialized(() => {
    void runner.load(); // load the model in the background: the first request waits for it, nothing else does
  });
  connection.onRequest(InlineCompletionRequest.type, (params, token) => inlineCompletion(documents, runner, params, token));
  connection.onCompletion((params, token) => completion(documents, runner, params, token));
  // mgd/stats: counters of this session (kept locally, never sent anywhere)
  connection.onRequest('mgd/stats', () => ({ ...runner.stats }));
  connection.onShutdown(() => runner.dispose());

  documents.listen(connection);
  connection.listen();
}
