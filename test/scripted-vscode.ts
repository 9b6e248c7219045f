/**
 * A scripted stand-in for the `vscode` module, enough for vscode-languageclient and the mgd extension to activate in
 * plain Node: one open document, settings from a plain object, and everything the extension shows (status bar text,
 * notifications, log lines) and registers (commands, providers) recorded for the test to read. Classes the client
 * library only constructs or extends are bare classes.
 */
import fs from 'node:fs';
import Module, { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

type Listener = (e: unknown) => void;
class Disposable {
  constructor(private readonly f?: () => void) {}
  dispose(): void {
    this.f?.();
  }
  static from(...d: Array<{ dispose(): void }>): Disposable {
    return new Disposable(() => d.forEach((x) => x.dispose()));
  }
}
class EventEmitter {
  private readonly listeners: Listener[] = [];
  readonly event = (f: Listener) => {
    this.listeners.push(f);
    return new Disposable(() => this.listeners.splice(this.listeners.indexOf(f), 1));
  };
  fire(e?: unknown): void {
    for (const f of [...this.listeners]) f(e);
  }
  dispose(): void {}
}
const noEvent = () => () => new Disposable();
class Uri {
  readonly authority = '';
  readonly query = '';
  readonly fragment = '';
  constructor(
    readonly scheme: string,
    readonly path: string,
  ) {}
  get fsPath(): string {
    return this.path;
  }
  static file(p: string): Uri {
    return new Uri('file', p);
  }
  static parse(s: string): Uri {
    return s.startsWith('file:') ? new Uri('file', fileURLToPath(s)) : new Uri(s.slice(0, s.indexOf(':')), s.slice(s.indexOf(':') + 1));
  }
  toString(): string {
    return this.scheme === 'file' ? pathToFileURL(this.path).href : `${this.scheme}:${this.path}`;
  }
  toJSON(): string {
    return this.toString();
  }
  with(): Uri {
    return this;
  }
}
class Position {
  constructor(
    readonly line: number,
    readonly character: number,
  ) {}
}
class Range {
  readonly start: Position;
  readonly end: Position;
  constructor(a: Position | number, b: Position | number, c?: number, d?: number) {
    this.start = typeof a === 'number' ? new Position(a, b as number) : a;
    this.end = typeof a === 'number' ? new Position(c!, d!) : (b as Position);
  }
}
export class CancellationTokenSource {
  private readonly emitter = new EventEmitter();
  readonly token = { isCancellationRequested: false, onCancellationRequested: this.emitter.event };
  cancel(): void {
    this.token.isCancellationRequested = true;
    this.emitter.fire();
  }
  dispose(): void {}
}
class InlineCompletionItem {
  constructor(
    public insertText: string,
    public range?: Range,
    public command?: { command: string; title: string },
  ) {}
}
class InlineCompletionList {
  constructor(public items: InlineCompletionItem[]) {}
}

export interface ScriptedEditor {
  /** Loads the bundled extension (CommonJS) at `main` with this API as its `vscode`. */
  load(main: string): { activate(context: { subscriptions: unknown[]; extensionPath: string }): void; deactivate(): Promise<void> };
  document: { uri: Uri; getText(): string };
  settings: Record<string, unknown>;
  commands: Map<string, (...a: unknown[]) => unknown>;
  providers: Map<string, unknown[]>;
  statusTexts: string[];
  notifications: Array<{ kind: string; message: string; detail?: string }>;
  logs: string[];
  Position: typeof Position;
}

/** An editor with `file` open (as `languageId`) in the workspace folder `workspace`. */
export function scriptedEditor(file: string, languageId: string, workspace: string, settings: Record<string, unknown>): ScriptedEditor {
  const text = fs.readFileSync(file, 'utf8');
  const lines = text.split('\n');
  const document = {
    uri: Uri.file(file),
    fileName: file,
    languageId,
    version: 1,
    isClosed: false,
    lineCount: lines.length,
    getText: (r?: Range) => (r ? lines[r.start.line]!.slice(r.start.character, r.end.character) : text),
    offsetAt: (p: Position) => lines.slice(0, p.line).reduce((n, l) => n + l.length + 1, 0) + p.character,
    lineAt: (l: number | Position) => ({ text: lines[typeof l === 'number' ? l : l.line] }),
  };
  const commands = new Map<string, (...a: unknown[]) => unknown>();
  const providers = new Map<string, unknown[]>();
  const statusTexts: string[] = [];
  const notifications: Array<{ kind: string; message: string; detail?: string }> = [];
  const logs: string[] = [];
  // namespaces answer on*/register* members they do not define: events that never fire, recorded registrations
  const namespace = <T extends object>(obj: T): T =>
    new Proxy(obj, {
      get: (t, k) => {
        if (k in t) return (t as Record<string | symbol, unknown>)[k];
        if (typeof k !== 'string') return undefined;
        if (/^on(Did|Will)/.test(k)) return noEvent();
        if (k.startsWith('register'))
          return (...a: unknown[]) => {
            providers.set(k, a);
            return new Disposable(() => providers.delete(k));
          };
        return undefined;
      },
    });
  const channel: Record<string, unknown> = { name: 'mgd', logLevel: 2, onDidChangeLogLevel: noEvent() };
  for (const m of ['info', 'warn', 'error', 'debug', 'trace', 'appendLine', 'append']) channel[m] = (s: unknown) => logs.push(`${m}: ${String(s).trim()}`);
  for (const m of ['show', 'hide', 'clear', 'dispose', 'replace']) channel[m] = () => {};
  const notify = (kind: string) => async (message: string, ...rest: unknown[]) => {
    const options = rest[0] as { detail?: string } | undefined;
    notifications.push({ kind, message, detail: typeof options === 'object' ? options?.detail : undefined });
    return undefined;
  };
  const section = (name: string | undefined) => (name === 'mgd' ? settings : name ? undefined : { mgd: settings });
  const api: Record<string, unknown> = {
    version: '1.91.0',
    Disposable,
    EventEmitter,
    Uri,
    Position,
    Range,
    CancellationTokenSource,
    CancellationError: class extends Error {},
    InlineCompletionItem,
    InlineCompletionList,
    InlineCompletionTriggerKind: { Invoke: 0, Automatic: 1 },
    StatusBarAlignment: { Left: 1, Right: 2 },
    ThemeColor: class {
      constructor(readonly id: string) {}
    },
    ConfigurationTarget: { Global: 1, Workspace: 2, WorkspaceFolder: 3 },
    ProgressLocation: { SourceControl: 1, Window: 10, Notification: 15 },
    LogLevel: { Off: 0, Trace: 1, Debug: 2, Info: 3, Warning: 4, Error: 5 },
    env: { language: 'en', appName: 'scripted', openExternal: async () => true },
    languages: namespace({
      match: (selector: Array<{ scheme?: string }>, d: typeof document) => (selector.some((s) => s.scheme === d.uri.scheme) ? 10 : 0),
      createDiagnosticCollection: () => ({ set() {}, delete() {}, clear() {}, forEach() {}, dispose() {} }),
    }),
    workspace: namespace({
      textDocuments: [document],
      notebookDocuments: [],
      workspaceFolders: [{ uri: Uri.file(workspace), name: 'workspace', index: 0 }],
      getConfiguration: (name?: string) => ({
        get: (key?: string, d?: unknown) => {
          const all = section(name) as Record<string, unknown> | undefined;
          if (key === undefined) return all;
          const v = key.split('.').reduce<unknown>((o, p) => (o as Record<string, unknown> | undefined)?.[p], all);
          return v === undefined ? d : v;
        },
        has: () => true,
        inspect: () => undefined,
        update: async (key: string, value: unknown) => {
          settings[key] = value;
        },
      }),
      createFileSystemWatcher: () => ({ onDidCreate: noEvent(), onDidChange: noEvent(), onDidDelete: noEvent(), dispose() {} }),
    }),
    window: namespace({
      activeTextEditor: undefined,
      visibleTextEditors: [],
      tabGroups: { all: [], onDidChangeTabs: noEvent(), onDidChangeTabGroups: noEvent() },
      createOutputChannel: () => channel,
      createStatusBarItem: () =>
        new Proxy({ show() {}, hide() {}, dispose() {} } as Record<string, unknown>, {
          set: (t, k, v) => {
            t[k as string] = v;
            if (k === 'text') statusTexts.push(String(v));
            return true;
          },
        }),
      withProgress: async (_o: unknown, task: (p: unknown, t: unknown) => Promise<unknown>) => task({ report() {} }, new CancellationTokenSource().token),
      showInformationMessage: notify('info'),
      showWarningMessage: notify('warning'),
      showErrorMessage: notify('error'),
    }),
    commands: {
      registerCommand: (id: string, f: (...a: unknown[]) => unknown) => {
        commands.set(id, f);
        return new Disposable(() => commands.delete(id));
      },
      executeCommand: async (id: string, ...a: unknown[]) => commands.get(id)?.(...a),
    },
  };
  return {
    load(main) {
      // the classes the client library extends or constructs without using them here
      const source = fs.readFileSync(main, 'utf8');
      for (const m of source.matchAll(/\b(?:code|vscode\w*)\.([A-Z]\w+)/g)) api[m[1]!] ??= class {};
      const resolve = (Module as unknown as { _resolveFilename: (r: string, ...rest: unknown[]) => string })._resolveFilename;
      (Module as unknown as { _resolveFilename: unknown })._resolveFilename = function (this: unknown, request: string, ...rest: unknown[]) {
        return request === 'vscode' ? 'vscode' : resolve.call(this, request, ...rest);
      };
      const require = createRequire(main);
      require.cache['vscode'] = { id: 'vscode', filename: 'vscode', loaded: true, exports: api } as unknown as NodeJS.Module;
      // a fresh copy for each editor: the bundle binds the `vscode` it was first loaded with
      delete require.cache[require.resolve(main)];
      return require(main);
    },
    document,
    settings,
    commands,
    providers,
    statusTexts,
    notifications,
    logs,
    Position,
  };
}
