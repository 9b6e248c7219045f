/**
 * The mgd extension: wires the server session, the status bar, the commands and the settings. Everything that talks
 * to the server is in session.ts; what the extension and the server agree on is in contract.ts.
 */
import * as vscode from 'vscode';
import { ACCEPT_COMMAND, formatStats, SETTINGS, type CommandId } from './contract.js';
import { selectModel } from './models.js';
import { ServerSession } from './session.js';
import { StatusItem } from './status.js';

let session: ServerSession | null = null;

export function activate(context: vscode.ExtensionContext): void {
  const log = vscode.window.createOutputChannel('mgd', { log: true });
  const status = new StatusItem();
  session = new ServerSession(context.extensionPath, log, status);
  const s = session;
  context.subscriptions.push(log, status, s);

  const setEnabled = async (enable: boolean) => {
    await vscode.workspace.getConfiguration('mgd').update('enable', enable, vscode.ConfigurationTarget.Global);
    s.render();
  };
  const commands: Record<CommandId, () => unknown> = {
    'mgd.enable': () => setEnabled(true),
    'mgd.disable': () => setEnabled(false),
    'mgd.showStats': async () => {
      try {
        const stats = await s.stats();
        if (!stats) {
          void vscode.window.showWarningMessage('mgd: the server is not running (see "mgd: Show Log", then "mgd: Restart Server")');
          return;
        }
        await vscode.window.showInformationMessage('mgd statistics (this session, kept locally)', { modal: true, detail: formatStats(stats) });
      } catch (e) {
        void vscode.window.showErrorMessage(`mgd: statistics unavailable: ${e instanceof Error ? e.message : String(e)}`);
      }
    },
    'mgd.restartServer': () => s.restart(),
    'mgd.showLog': () => log.show(true),
    'mgd.selectModel': () => selectModel(context.extensionPath, log),
  };
  for (const [id, run] of Object.entries(commands)) context.subscriptions.push(vscode.commands.registerCommand(id, run));
  context.subscriptions.push(vscode.commands.registerCommand(ACCEPT_COMMAND, () => s.accepted('full')));

  // launch settings restart the server; server settings reach it through the client's configuration sync
  const launch = Object.entries(SETTINGS).filter(([, target]) => target === 'launch').map(([key]) => key);
  context.subscriptions.push(
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (launch.some((key) => e.affectsConfiguration(key))) {
        log.info('a launch setting changed; restarting the server');
        void s.restart();
      } else if (e.affectsConfiguration('mgd.enable')) s.render();
    }),
  );

  // an editor switched to: the server prefills its prompt while the user reads
  context.subscriptions.push(
    vscode.window.onDidChangeActiveTextEditor((editor) => {
      if (editor && editor.document.uri.scheme === 'file') s.focused(editor.document.uri.toString(), editor.selection.active);
    }),
  );

  void s.start();
}

export async function deactivate(): Promise<void> {
  await session?.stop();
  session = null;
}
