/**
 * The status-bar item: one state at a time, each with its icon, text and tooltip. Clicking it shows the log when
 * something is wrong, the statistics otherwise.
 */
import * as vscode from 'vscode';

export type Status =
  | { state: 'starting' }
  | { state: 'loading'; message?: string }
  | { state: 'ready'; model?: { text: string; tooltip: string } }
  | { state: 'busy' }
  | { state: 'disabled' }
  | { state: 'error'; message: string };

export class StatusItem implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem('mgd.status', vscode.StatusBarAlignment.Right, 100);
  private current: Status = { state: 'starting' };

  constructor() {
    this.item.name = 'mgd';
    this.set(this.current);
    this.item.show();
  }

  get status(): Status {
    return this.current;
  }

  set(status: Status): void {
    this.current = status;
    const item = this.item;
    item.backgroundColor = undefined;
    switch (status.state) {
      case 'starting':
        item.text = '$(loading~spin) mgd';
        item.tooltip = 'mgd: starting the server';
        item.command = 'mgd.showLog';
        break;
      case 'loading':
        item.text = '$(loading~spin) mgd';
        item.tooltip = `mgd: ${status.message ?? 'loading the model'}`;
        item.command = 'mgd.showLog';
        break;
      case 'ready':
        item.text = status.model ? `$(sparkle) mgd: ${status.model.text}` : '$(sparkle) mgd';
        item.tooltip = `mgd: ready${status.model ? `, ${status.model.tooltip}` : ''} (click for statistics)`;
        item.command = 'mgd.showStats';
        break;
      case 'busy':
        item.text = '$(sync~spin) mgd';
        item.tooltip = 'mgd: completing';
        item.command = 'mgd.showStats';
        break;
      case 'disabled':
        item.text = '$(circle-slash) mgd';
        item.tooltip = 'mgd: completions are disabled (click to enable)';
        item.command = 'mgd.enable';
        break;
      case 'error':
        item.text = '$(error) mgd';
        item.tooltip = `mgd: ${status.message} (click for the log)`;
        item.command = 'mgd.showLog';
        item.backgroundColor = new vscode.ThemeColor('statusBarItem.errorBackground');
        break;
    }
  }

  dispose(): void {
    this.item.dispose();
  }
}
