/**
 * One language-server session at a time: starts `mgd serve --stdio` through vscode-languageclient, follows its state
 * into the status bar, and decides what happens when the server stops. A server that fails to start, or stops before
 * it ever became ready, is not restarted (the status bar says why and the log has the details); one that crashes
 * after working is restarted at most twice in three minutes. The user restarts it with `mgd: Restart Server`.
 */
import * as vscode from 'vscode';
import {
  CloseAction,
  ErrorAction,
  LanguageClient,
  LogMessageNotification,
  MessageType,
  State,
  type LanguageClientOptions,
  type Middleware,
  type ServerOptions,
} from 'vscode-languageclient/node';
import { ACCEPT_COMMAND, findNodeOnPath, findServerDir, isModelLoadFailure, readSettings, readyLabel, serverCommand, serverSettings, type ExtensionSettings, type ServerStats } from './contract.js';
import type { StatusItem } from './status.js';

type ServerState = { state: 'stopped' } | { state: 'starting' } | { state: 'loading'; message?: string } | { state: 'ready' } | { state: 'error'; message: string };

const CRASH_WINDOW_MS = 3 * 60_000;
const MAX_RESTARTS = 2;

export function settings(): ExtensionSettings {
  const cfg = vscode.workspace.getConfiguration('mgd');
  return readSettings((key) => cfg.get(key));
}

/**
 * A client that, once replaced by a restart, only logs. Disposing a client whose start is still in flight (the user
 * restarts while the library is bringing a crashed server back) rejects its initialize, and the library reports that
 * with a forced error notification ("couldn't create connection to server") although nothing failed: the new server
 * is already on its way.
 */
class SessionClient extends LanguageClient {
  retired = false;
  override error(message: string, data?: unknown, showNotification: boolean | 'force' = true): void {
    super.error(message, data, this.retired ? false : showNotification);
  }
}

export class ServerSession implements vscode.Disposable {
  private client: SessionClient | null = null;
  private server: ServerState = { state: 'stopped' };
  private inFlight = 0;
  private crashes: number[] = [];
  /** The model and backend the ready server runs (from mgd/stats), for the status bar. */
  private model: { text: string; tooltip: string } | undefined;
  private stopping = false;

  constructor(
    private readonly extensionDir: string,
    private readonly log: vscode.LogOutputChannel,
    private readonly status: StatusItem,
  ) {}

  get running(): LanguageClient | null {
    return this.client?.state === State.Running ? this.client : null;
  }

  async start(): Promise<void> {
    if (this.client) return;
    const s = settings();
    const serverDir = findServerDir(this.extensionDir);
    if (!serverDir) {
      this.fail(`the bundled server is missing (no server/bin/mgd.js or dist/server/cli.js under ${this.extensionDir}): reinstall the extension, or run "npm run build" in a development checkout`);
      return;
    }
    const cmd = serverCommand(s, serverDir, { nodeOnPath: findNodeOnPath(), execPath: process.execPath, env: process.env });
    this.log.info(`starting the server with ${cmd.runtime}: ${[cmd.command, ...cmd.args].join(' ')}`);
    const serverOptions: ServerOptions = { command: cmd.command, args: cmd.args, options: { env: cmd.env, cwd: serverDir } };
    // A client replaced by a restart may still report (its process closing, a restart of its own in flight): only
    // the current client's events change the state.
    let client: SessionClient | null = null;
    const current = () => client !== null && client === this.client;
    const clientOptions: LanguageClientOptions = {
      documentSelector: [{ scheme: 'file' }, { scheme: 'untitled' }],
      outputChannel: this.log,
      synchronize: { configurationSection: 'mgd' },
      initializationOptions: serverSettings(s),
      middleware: this.middleware(current),
      errorHandler: {
        error: (_error, _message, count) => ({ action: (count ?? 0) <= 3 ? ErrorAction.Continue : ErrorAction.Shutdown, handled: true }),
        closed: () => (current() ? this.closed() : { action: CloseAction.DoNotRestart, handled: true }),
      },
      // a failed initialize is not retried: the status bar and the log say why (the library shows a notification)
      initializationFailedHandler: (error) => {
        if (!current()) return false;
        this.fail(`the server did not initialize: ${error instanceof Error ? error.message : String(error)}`, false);
        return false;
      },
    };
    client = new SessionClient('mgd', 'mgd', serverOptions, clientOptions);
    // v11 registers inline completion (LSP 3.18) as a built-in feature; proposed features are registered as the
    // library asks, so a newer proposed one is picked up without code here.
    client.registerProposedFeatures();
    // The server's log lines go to the log, and tell the status bar when the model failed to load. Registered before
    // start, this handler replaces the library's own window/logMessage handler, so it writes the log itself.
    client.onNotification(LogMessageNotification.type, (m) => (current() ? this.serverLog(m.type, m.message) : this.log.appendLine(m.message)));
    this.client = client;
    this.stopping = false;
    this.setServer({ state: 'starting' });
    try {
      await client.start();
      if (current() && this.server.state === 'starting') this.setServer({ state: 'loading' });
    } catch (e) {
      if (!current()) return; // stopped (a restart) while starting
      // the library has already shown its own notification for this one
      this.fail(`the server could not be started with ${cmd.runtime}: ${e instanceof Error ? e.message : String(e)}`, false);
      // the client is left stopped; the user restarts it once the cause is fixed
    }
  }

  async stop(): Promise<void> {
    const client = this.client;
    this.client = null;
    if (!client) return;
    this.stopping = true;
    client.retired = true;
    try {
      await client.dispose(2000);
    } catch (e) {
      // a client that never started has nothing to stop
      this.log.debug(`stopping the server: ${e instanceof Error ? e.message : String(e)}`);
    }
    this.setServer({ state: 'stopped' });
  }

  async restart(): Promise<void> {
    await this.stop();
    this.crashes = [];
    await this.start();
  }

  async stats(): Promise<ServerStats | null> {
    const client = this.running;
    if (!client) return null;
    return await client.sendRequest<ServerStats>('mgd/stats');
  }

  /** Tells the server the user accepted a completion (kept locally by the server, never sent anywhere). */
  accepted(kind: 'full' | 'partial'): void {
    void this.running?.sendNotification('mgd/didAccept', { kind });
  }

  /**
   * Tells the server which document the user is looking at and where the cursor is, so it prefills that document's
   * prompt (repository context first) in the background before the first keystroke there.
   */
  focused(uri: string, position: { line: number; character: number }): void {
    void this.running?.sendNotification('mgd/didFocus', { textDocument: { uri }, position });
  }

  /** Redraws the status bar (after enable/disable). */
  render(): void {
    const s = this.server;
    if (s.state === 'error') this.status.set(s);
    else if (!settings().enable) this.status.set({ state: 'disabled' });
    else if (s.state === 'ready') this.status.set(this.inFlight > 0 ? { state: 'busy' } : { state: 'ready', model: this.model });
    else if (s.state === 'loading') this.status.set(s);
    else this.status.set({ state: 'starting' });
  }

  dispose(): void {
    void this.stop();
  }

  private setServer(s: ServerState): void {
    if (s.state !== 'ready') this.model = undefined;
    this.server = s;
    this.render();
  }

  /** Error state: logged every time, shown to the user once until the server is started again. */
  private fail(message: string, notify = true): void {
    this.log.error(message);
    const shown = this.server.state === 'error';
    this.setServer({ state: 'error', message });
    if (shown || !notify) return;
    void vscode.window.showErrorMessage(`mgd: ${message}`, 'Show Log').then((choice) => {
      if (choice) this.log.show(true);
    });
  }

  private serverLog(type: MessageType, message: string): void {
    if (isModelLoadFailure(message)) return this.fail(message.replace(/^mgd: /, ''));
    if (type === MessageType.Error) this.log.error(message);
    else if (type === MessageType.Warning) this.log.warn(message);
    else if (type === MessageType.Info) this.log.info(message);
    else if (type === MessageType.Debug) this.log.debug(message);
    else this.log.appendLine(message);
  }

  private closed(): { action: CloseAction; handled: boolean } {
    if (this.stopping) return { action: CloseAction.DoNotRestart, handled: true };
    const now = Date.now();
    const wasReady = this.server.state === 'ready';
    this.crashes = this.crashes.filter((t) => now - t < CRASH_WINDOW_MS);
    this.crashes.push(now);
    if (wasReady && this.crashes.length <= MAX_RESTARTS) {
      this.log.warn(`the server stopped unexpectedly; restarting it (${this.crashes.length} of ${MAX_RESTARTS} in three minutes)`);
      this.setServer({ state: 'starting' });
      return { action: CloseAction.Restart, handled: true };
    }
    if (this.server.state !== 'error') {
      this.fail(wasReady ? 'the server stopped repeatedly; it is not restarted again (see the log, then "mgd: Restart Server")' : 'the server stopped before it was ready (see the log, then "mgd: Restart Server")');
    }
    return { action: CloseAction.DoNotRestart, handled: true };
  }

  private middleware(current: () => boolean): Middleware {
    return {
      provideInlineCompletionItems: async (document, position, context, token, next) => {
        const s = settings();
        if (!s.enable || this.server.state === 'error') return null;
        // debounce typing: VS Code cancels the token when the next keystroke asks again
        if (context.triggerKind === vscode.InlineCompletionTriggerKind.Automatic && s.debounceMs > 0 && !(await delay(s.debounceMs, token))) return null;
        this.inFlight++;
        this.render();
        try {
          const result = await next(document, position, context, token);
          if (!result) return result;
          const items = Array.isArray(result) ? result : result.items;
          // VS Code runs an item's command after the user accepted all of it; partial accepts (word by word) have
          // no stable API, so only full accepts are reported.
          for (const item of items) item.command ??= { title: 'mgd: accepted', command: ACCEPT_COMMAND };
          return result;
        } finally {
          this.inFlight--;
          this.render();
        }
      },
      // VS Code gets the completion as ghost text; the plain completion item is for clients without inline
      // completion, and here it would show the same text twice.
      provideCompletionItem: () => undefined,
      handleWorkDoneProgress: (token, params, next) => {
        if (!current()) return next(token, params);
        if (params.kind === 'begin') this.setServer({ state: 'loading', message: params.message ?? params.title });
        else if (params.kind === 'report' && this.server.state === 'loading') this.setServer({ state: 'loading', message: params.message });
        else if (params.kind === 'end' && this.server.state !== 'error') {
          this.setServer({ state: 'ready' });
          // the model and backend the server runs (a lost GPU falls back to onnx): named in the status bar
          void this.stats()
            .then((stats) => {
              this.model = readyLabel(stats) ?? undefined;
              if (current()) this.render();
            })
            .catch(() => undefined);
        }
        next(token, params);
      },
    };
  }
}

/** Waits `ms`; false if the token was cancelled first. */
function delay(ms: number, token: vscode.CancellationToken): Promise<boolean> {
  if (token.isCancellationRequested) return Promise.resolve(false);
  return new Promise((resolve) => {
    const sub = token.onCancellationRequested(() => {
      clearTimeout(timer);
      sub.dispose();
      resolve(false);
    });
    const timer = setTimeout(() => {
      sub.dispose();
      resolve(true);
    }, ms);
  });
}
