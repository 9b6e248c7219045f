/**
 * What the extension and the mgd server agree on, with no `vscode` import so the repository's tests can check it
 * against the manifest (package.json) and the server without an editor: the settings and where each goes, the
 * commands, and the server's command line.
 */
import fs from 'node:fs';
import path from 'node:path';

/**
 * Where a setting takes effect:
 * - `server`: read by the running server (workspace/configuration section `mgd`, didChangeConfiguration,
 *   initializationOptions); the key after `mgd.` is the server's name for it.
 * - `launch`: decides how the server process starts (its command line or the Node runtime); a change restarts it.
 * - `client`: handled in the extension only.
 */
export type SettingTarget = 'server' | 'launch' | 'client';

export const SETTINGS = {
  'mgd.enable': 'client',
  'mgd.maxTokens': 'server',
  'mgd.monitors': 'server',
  'mgd.monitorKinds': 'server',
  'mgd.contextTokens': 'server',
  'mgd.model': 'launch',
  'mgd.weights': 'launch',
  'mgd.threads': 'launch',
  'mgd.nodePath': 'launch',
  'mgd.debounceMs': 'client',
  'mgd.trace.server': 'client',
} as const satisfies Record<string, SettingTarget>;

export type SettingKey = keyof typeof SETTINGS;

/** Commands in the command palette (category "mgd"), with their titles; the manifest lists exactly these. */
export const COMMANDS = {
  'mgd.enable': 'Enable Completions',
  'mgd.disable': 'Disable Completions',
  'mgd.showStats': 'Show Statistics',
  'mgd.restartServer': 'Restart Server',
  'mgd.showLog': 'Show Log',
  'mgd.selectModel': 'Select Model',
} as const;

export type CommandId = keyof typeof COMMANDS;

/** Run by VS Code when the user accepts a whole inline completion (never shown in the palette). */
export const ACCEPT_COMMAND = 'mgd.didAccept';

export type Weights = 'f32' | 'q8' | 'q4' | 'f16';

/** The server's monitors by kind (the engine's MONITOR_KINDS; the repository's tests check they are the same). */
export const MONITOR_KINDS = ['dereference', 'call-arity', 'callable', 'scope-names', 'new-class', 'import-names', 'switch-enum', 'brackets', 'line-end'] as const;
export type MonitorKind = (typeof MONITOR_KINDS)[number];

/** The most repository-context tokens the server takes (`mgd.contextTokens`). */
export const MAX_CONTEXT_TOKENS = 8192;

/** The settings as the extension uses them, validated; anything invalid falls back to the default. */
export interface ExtensionSettings {
  enable: boolean;
  maxTokens: number;
  monitors: boolean;
  /** Each monitor on or off (with `monitors` on). */
  monitorKinds: Record<MonitorKind, boolean>;
  /** Repository-context budget in tokens; null: the server's default. */
  contextTokens: number | null;
  /** A model directory, a Hugging Face id (`ORG/NAME[@REV]`) or empty for the embedded model. */
  model: string;
  weights: Weights;
  /** 0: every core. */
  threads: number;
  /** The Node.js executable that runs the server; empty: `node` on PATH, else VS Code's own runtime. */
  nodePath: string;
  debounceMs: number;
}

export const DEFAULTS: ExtensionSettings = {
  enable: true,
  maxTokens: 48,
  monitors: true,
  monitorKinds: { dereference: true, 'call-arity': true, callable: true, 'scope-names': true, 'new-class': true, 'import-names': true, 'switch-enum': true, brackets: true, 'line-end': true },
  contextTokens: null,
  model: '',
  weights: 'f32',
  threads: 0,
  nodePath: '',
  debounceMs: 75,
};

/** Reads the settings through `get` (the `mgd` configuration section's getter); invalid values are ignored. */
export function readSettings(get: (key: string) => unknown): ExtensionSettings {
  const bool = (key: keyof ExtensionSettings & string, d: boolean) => (typeof get(key) === 'boolean' ? (get(key) as boolean) : d);
  const int = (key: keyof ExtensionSettings & string, min: number, max: number, d: number) => {
    const v = get(key);
    return typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max ? v : d;
  };
  const str = (key: keyof ExtensionSettings & string) => (typeof get(key) === 'string' ? (get(key) as string).trim() : '');
  const weights = get('weights');
  const kinds = get('monitorKinds');
  const given = typeof kinds === 'object' && kinds !== null ? (kinds as Record<string, unknown>) : {};
  const contextTokens = get('contextTokens');
  return {
    enable: bool('enable', DEFAULTS.enable),
    maxTokens: int('maxTokens', 1, 512, DEFAULTS.maxTokens),
    monitors: bool('monitors', DEFAULTS.monitors),
    monitorKinds: Object.fromEntries(MONITOR_KINDS.map((k) => [k, given[k] !== false])) as Record<MonitorKind, boolean>,
    contextTokens: typeof contextTokens === 'number' && Number.isInteger(contextTokens) && contextTokens >= 0 && contextTokens <= MAX_CONTEXT_TOKENS ? contextTokens : DEFAULTS.contextTokens,
    model: str('model'),
    weights: weights === 'f32' || weights === 'q8' || weights === 'q4' || weights === 'f16' ? weights : DEFAULTS.weights,
    threads: int('threads', 0, 1024, DEFAULTS.threads),
    nodePath: str('nodePath'),
    debounceMs: int('debounceMs', 0, 2000, DEFAULTS.debounceMs),
  };
}

/** The settings the server reads, as initializationOptions (the same names as its `mgd` section). */
export function serverSettings(s: ExtensionSettings): Pick<ExtensionSettings, 'maxTokens' | 'monitors' | 'monitorKinds' | 'contextTokens'> {
  return { maxTokens: s.maxTokens, monitors: s.monitors, monitorKinds: { ...s.monitorKinds }, contextTokens: s.contextTokens };
}

/** Where the server lies: `server/` inside a packaged extension, the repository root in a development checkout. */
export function findServerDir(extensionDir: string): string | null {
  for (const dir of [path.join(extensionDir, 'server'), path.dirname(extensionDir)]) {
    if (fs.existsSync(path.join(dir, 'bin', 'mgd.js')) && fs.existsSync(path.join(dir, 'dist', 'server', 'cli.js'))) return dir;
  }
  return null;
}

/** The first `node` executable on PATH, or null. */
export function findNodeOnPath(env: NodeJS.ProcessEnv = process.env, platform: NodeJS.Platform = process.platform): string | null {
  const names = platform === 'win32' ? ['node.exe', 'node.cmd'] : ['node'];
  for (const dir of (env.PATH ?? env.Path ?? '').split(path.delimiter)) {
    if (!dir) continue;
    for (const name of names) {
      const p = path.join(dir, name);
      try {
        if (fs.statSync(p).isFile()) return p;
      } catch {
        // not here
      }
    }
  }
  return null;
}

export interface ServerCommand {
  command: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  /** How the runtime was chosen, for the log. */
  runtime: string;
}

/**
 * `node <server>/bin/mgd.js serve --stdio [--model DIR] [--weights W] [--threads N]`. The runtime is the configured
 * nodePath, else `node` on PATH, else the editor's own executable run as Node (ELECTRON_RUN_AS_NODE).
 */
export function serverCommand(s: ExtensionSettings, serverDir: string, host: RuntimeHost): ServerCommand {
  const args = ['serve', '--stdio'];
  if (s.model) args.push('--model', s.model);
  if (s.weights !== DEFAULTS.weights) args.push('--weights', s.weights);
  if (s.threads > 0) args.push('--threads', String(s.threads));
  return cliCommand(s, serverDir, host, args);
}

/** Where the extension runs: what it needs to choose the Node runtime. */
export interface RuntimeHost {
  nodeOnPath: string | null;
  execPath: string;
  env: NodeJS.ProcessEnv;
}

/** `node <server>/bin/mgd.js ARGS...` with the runtime serverCommand chooses (`model list --json`, `model pull`). */
export function cliCommand(s: ExtensionSettings, serverDir: string, host: RuntimeHost, cliArgs: string[]): ServerCommand {
  const args = [path.join(serverDir, 'bin', 'mgd.js'), ...cliArgs];
  const env = { ...host.env };
  if (s.nodePath) return { command: s.nodePath, args, env, runtime: `mgd.nodePath (${s.nodePath})` };
  if (host.nodeOnPath) return { command: host.nodeOnPath, args, env, runtime: `node on PATH (${host.nodeOnPath})` };
  env.ELECTRON_RUN_AS_NODE = '1';
  return { command: host.execPath, args, env, runtime: `the editor's own Node runtime (${host.execPath})` };
}

/** A server log line saying the model could not be loaded (server/lsp/completion-runner.ts writes it). */
export function isModelLoadFailure(message: string): boolean {
  return message.includes('the model could not be loaded');
}

/**
 * The answer of `mgd/stats`, as the server sends it (server/lsp/completion-runner.ts): counters, and groups of them
 * (`kvCache`, null until the model is loaded).
 */
export type ServerStats = Record<string, unknown>;

/** The stats as lines for a person, one per counter; a group's counters as `group.name`. */
export function formatStats(stats: ServerStats): string {
  const lines: string[] = [];
  const walk = (o: Record<string, unknown>, at: string) => {
    for (const [k, v] of Object.entries(o)) {
      if (typeof v === 'object' && v !== null && !Array.isArray(v)) walk(v as Record<string, unknown>, `${at}${k}.`);
      else if (v !== null && v !== undefined) lines.push(`${at}${k}: ${typeof v === 'string' ? v : JSON.stringify(v)}`);
    }
  };
  walk(stats, '');
  if (lines.length === 0) return 'no statistics yet';
  return lines.sort().join('\n');
}

/** A model in the Hugging Face cache, as `mgd model list --json` lists it (engine/model/hub.ts). */
export interface CachedModel {
  id: string;
  bytes: number;
  refs: Record<string, string>;
  snapshots: string[];
}

/** A model in Ollama's store, as `mgd model list --json` lists it (engine/model/ollama.ts): `ollama:NAME:TAG`. */
export interface OllamaModel {
  id: string;
  file: string;
  bytes: number;
}

/** A choice of the Select Model command: a model (the value for `mgd.model`, '' for the embedded one) or an action. */
export type ModelPick =
  | { kind: 'model'; label: string; description: string; value: string; current: boolean }
  | { kind: 'pull' | 'folder' | 'file'; label: string; description: string };

/**
 * The Select Model list: the embedded model, each cached model and each Ollama model (with its size; the current one
 * marked), then pulling a model by id, choosing a folder and choosing a GGUF file. `current` is the `mgd.model`
 * setting.
 */
export function modelPicks(models: readonly CachedModel[], current: string, ollama: readonly OllamaModel[] = []): ModelPick[] {
  const base = current.replace(/@[^/]*$/, '');
  const picks: ModelPick[] = [{ kind: 'model', label: 'Embedded model', description: 'mgd-coder-30m, a small demo model', value: '', current: current === '' }];
  for (const m of [...models].sort((a, b) => a.id.localeCompare(b.id))) {
    picks.push({ kind: 'model', label: m.id, description: `${formatBytes(m.bytes)} in the Hugging Face cache`, value: m.id, current: base === m.id });
  }
  for (const m of [...ollama].sort((a, b) => a.id.localeCompare(b.id)))
    picks.push({ kind: 'model', label: m.id, description: `${formatBytes(m.bytes)} GGUF from Ollama`, value: m.id, current: current === m.id });
  // a path (or an id no longer cached) that is set now stays choosable
  if (current !== '' && !picks.some((p) => p.kind === 'model' && p.current)) picks.push({ kind: 'model', label: current, description: 'the current setting', value: current, current: true });
  picks.push({ kind: 'pull', label: 'Pull a model by Hugging Face id…', description: 'e.g. Qwen/Qwen2.5-Coder-0.5B' });
  picks.push({ kind: 'folder', label: 'Choose a model folder…', description: 'config.json, tokenizer.json, *.safetensors' });
  picks.push({ kind: 'file', label: 'Choose a GGUF file…', description: 'llama.cpp / LM Studio, Llama or Qwen2 family' });
  return picks;
}

/** `ORG/NAME` or `ORG/NAME@REV`, as `mgd model pull` takes it; null if `s` is not one. */
export function parseModelIdInput(s: string): string | null {
  const t = s.trim();
  return /^[A-Za-z0-9][\w.-]*\/[A-Za-z0-9][\w.-]*(?:@[\w./-]+)?$/.test(t) ? t : null;
}

/**
 * One progress event of `mgd model pull --json` (a line of its stderr): engine/model/hub.ts's PullProgress as the CLI
 * writes it, restated here because the extension imports nothing from the engine (test/hub.test.ts reads the CLI's
 * lines with parsePullProgress, so the two cannot drift apart unnoticed).
 */
export interface PullProgress {
  file: string;
  done: number;
  total: number;
  files: number;
  of: number;
}

export function parsePullProgress(line: string): PullProgress | null {
  try {
    const p = JSON.parse(line) as Partial<PullProgress> & { progress?: unknown };
    if (p.progress !== true || typeof p.file !== 'string' || typeof p.done !== 'number' || typeof p.total !== 'number') return null;
    return { file: p.file, done: p.done, total: p.total, files: Number(p.files) || 0, of: Number(p.of) || 0 };
  } catch {
    return null;
  }
}

/** What the status bar names once the server is ready: the model and the backend, from `mgd/stats`. */
export function readyLabel(stats: ServerStats | null): { text: string; tooltip: string } | null {
  const model = stats?.model as { name?: unknown } | null | undefined;
  const backend = stats?.backend as { name?: unknown; device?: unknown; weights?: unknown } | null | undefined;
  if (!model || typeof model.name !== 'string') return null;
  const short = model.name.split('/').pop()!;
  const on = backend && typeof backend.name === 'string' ? `${backend.name}${typeof backend.weights === 'string' ? ` ${backend.weights}` : ''}` : '';
  const device = backend && typeof backend.device === 'string' ? ` (${backend.device})` : '';
  return { text: on ? `${short} · ${on}` : short, tooltip: `model ${model.name}${on ? ` on ${on}${device}` : ''}` };
}

function formatBytes(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)} GB`;
  return `${Math.max(1, Math.round(n / 1e6))} MB`;
}
