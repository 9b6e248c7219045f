/**
 * The Select Model command: the models in the Hugging Face cache and Ollama's store (as `mgd model list --json`
 * finds them), the embedded one, pulling a model by id with a progress notification (`mgd model pull --json`,
 * cancellable), a folder, or a GGUF file. The choice goes into the `mgd.model` setting, a launch setting: the server restarts on it.
 * The CLI runs with the runtime the server runs with (contract.ts cliCommand), so both see the same cache.
 */
import { spawn } from 'node:child_process';
import * as vscode from 'vscode';
import { cliCommand, findNodeOnPath, findServerDir, modelPicks, parseModelIdInput, parsePullProgress, type CachedModel, type ModelPick, type OllamaModel } from './contract.js';
import { settings } from './session.js';

export async function selectModel(extensionDir: string, log: vscode.LogOutputChannel): Promise<void> {
  const serverDir = findServerDir(extensionDir);
  if (!serverDir) {
    void vscode.window.showErrorMessage('mgd: the bundled server is missing: reinstall the extension');
    return;
  }
  const run = (args: string[], onStderrLine?: (line: string) => void, token?: vscode.CancellationToken) => runCli(serverDir, args, log, onStderrLine, token);
  let models: CachedModel[] = [];
  let ollama: OllamaModel[] = [];
  try {
    const listed = JSON.parse((await run(['model', 'list', '--json'])).stdout) as { models: CachedModel[]; ollama?: OllamaModel[] };
    models = listed.models;
    ollama = listed.ollama ?? [];
  } catch (e) {
    log.warn(`listing cached models: ${message(e)}`);
  }
  const current = settings().model;
  const items = modelPicks(models, current, ollama).map((p) => ({ label: p.kind === 'model' && p.current ? `$(check) ${p.label}` : p.label, description: p.description, pick: p }));
  const chosen = await vscode.window.showQuickPick(items, { title: 'mgd: Select Model', placeHolder: 'The model that completes your code' });
  if (!chosen) return;
  const pick: ModelPick = chosen.pick;
  let value: string | null = null;
  if (pick.kind === 'model') value = pick.value;
  else if (pick.kind === 'folder') {
    const dirs = await vscode.window.showOpenDialog({ canSelectFolders: true, canSelectFiles: false, canSelectMany: false, title: 'A model folder in Hugging Face layout' });
    value = dirs?.[0]?.fsPath ?? null;
  } else if (pick.kind === 'file') {
    const files = await vscode.window.showOpenDialog({ canSelectFolders: false, canSelectFiles: true, canSelectMany: false, filters: { GGUF: ['gguf'] }, title: 'A GGUF model file' });
    value = files?.[0]?.fsPath ?? null;
  } else {
    const input = await vscode.window.showInputBox({
      title: 'mgd: Pull a Model',
      prompt: 'A Hugging Face model id, optionally @revision (HF_TOKEN and HF_ENDPOINT from the environment are used)',
      placeHolder: 'Qwen/Qwen2.5-Coder-0.5B',
      validateInput: (s) => (parseModelIdInput(s) ? null : 'ORG/NAME or ORG/NAME@REVISION'),
    });
    const id = input && parseModelIdInput(input);
    if (!id) return;
    value = await pull(id, run);
  }
  if (value === null || value === current) return;
  await vscode.workspace.getConfiguration('mgd').update('model', value, vscode.ConfigurationTarget.Global);
}

type Run = (args: string[], onStderrLine?: (line: string) => void, token?: vscode.CancellationToken) => Promise<{ stdout: string }>;

/** `mgd model pull ID --json` under a progress notification; the id to use on success, null otherwise. */
async function pull(id: string, run: Run): Promise<string | null> {
  return await vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title: `mgd: pulling ${id}`, cancellable: true }, async (progress, token) => {
    let shown = 0;
    try {
      await run(
        ['model', 'pull', id, '--json'],
        (line) => {
          const p = parsePullProgress(line);
          if (!p || p.total === 0) return;
          // the notification's bar moves by increments: overall share, files counted equally
          const overall = ((p.files + p.done / p.total) / Math.max(1, p.of)) * 100;
          progress.report({ message: `${p.file} (${p.files + 1}/${p.of}) ${Math.floor((p.done / p.total) * 100)}%`, increment: Math.max(0, overall - shown) });
          shown = Math.max(shown, overall);
        },
        token,
      );
      return id;
    } catch (e) {
      if (!token.isCancellationRequested) void vscode.window.showErrorMessage(`mgd: ${message(e)}`);
      return null;
    }
  });
}

/** Runs the CLI; rejects with its last stderr line (its one-line error) when it fails or is cancelled. */
function runCli(serverDir: string, args: string[], log: vscode.LogOutputChannel, onStderrLine?: (line: string) => void, token?: vscode.CancellationToken): Promise<{ stdout: string }> {
  const cmd = cliCommand(settings(), serverDir, { nodeOnPath: findNodeOnPath(), execPath: process.execPath, env: process.env }, args);
  log.info(`running ${[cmd.command, ...cmd.args].join(' ')}`);
  return new Promise((resolve, reject) => {
    const child = spawn(cmd.command, cmd.args, { env: cmd.env, cwd: serverDir, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let pending = '';
    let lastLine = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      pending += d;
      const lines = pending.split('\n');
      pending = lines.pop()!;
      for (const line of lines) {
        if (!line.trim()) continue;
        if (onStderrLine && parsePullProgress(line)) onStderrLine(line);
        else {
          lastLine = line;
          log.info(line);
        }
      }
    });
    const cancel = token?.onCancellationRequested(() => child.kill());
    child.on('error', (e) => {
      cancel?.dispose();
      reject(e);
    });
    child.on('close', (code) => {
      cancel?.dispose();
      if (code === 0) resolve({ stdout });
      else reject(new Error(token?.isCancellationRequested ? 'cancelled' : lastLine.replace(/^mgd: /, '') || `mgd ${args.join(' ')} exited with ${code}`));
    });
  });
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
