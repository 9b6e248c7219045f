// Drives the packaged extension through the real VS Code UI: code-server (VS Code in a browser) with the .vsix
// installed into fresh directories, a copy of a fixture workspace, and headless Chromium through playwright-core.
// Used by test/e2e/vscode.e2e.test.ts and scripts/e2e/bench.mjs; scripts/e2e/setup.mjs installs what it needs.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/** Screenshots and logs of the last run (inside the clone, ignored by git: .cache/). */
export const artifactsDir = path.join(root, '.cache', 'e2e', 'artifacts');

const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'];

/** Settings that keep VS Code's own widgets (suggest, welcome page, trust prompt) from hiding or stealing the ghost text. */
export const BASE_SETTINGS = {
  'workbench.startupEditor': 'none',
  'workbench.tips.enabled': false,
  'workbench.enableExperiments': false,
  'security.workspace.trust.enabled': false,
  'telemetry.telemetryLevel': 'off',
  'extensions.autoUpdate': false,
  'extensions.autoCheckUpdates': false,
  'update.mode': 'none',
  'editor.quickSuggestions': { other: false, comments: false, strings: false },
  'editor.suggestOnTriggerCharacters': false,
  'editor.parameterHints.enabled': false,
  'editor.inlineSuggest.enabled': true,
  'editor.minimap.enabled': false,
  'files.autoSave': 'off',
  'git.enabled': false,
  'typescript.tsserver.experimental.enableProjectDiagnostics': false,
  'chat.commandCenter.enabled': false,
  'workbench.secondarySideBar.defaultVisibility': 'hidden',
};

/** Builds the .vsix with client/scripts/package.mjs (MGD_E2E_VSIX: use that file instead). */
export function packageVsix(out = path.join(root, '.cache', 'e2e', 'mgd.vsix')) {
  if (process.env.MGD_E2E_VSIX) return path.resolve(process.env.MGD_E2E_VSIX);
  for (const need of ['client/node_modules/@vscode/vsce', 'dist/server/cli.js']) {
    if (!fs.existsSync(path.join(root, need))) throw new Error(`${need} is missing: run npm run build and npm ci --prefix client first (or set MGD_E2E_VSIX)`);
  }
  fs.mkdirSync(path.dirname(out), { recursive: true });
  execFileSync(process.execPath, [path.join(root, 'client/scripts/package.mjs'), '--out', out], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
  return out;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Waits until `f` returns a truthy value (polling), or throws with `what` after `timeout` ms. */
export async function until(f, what, timeout = 60_000, interval = 100) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await f();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out after ${timeout} ms waiting for ${what}${last ? ` (last error: ${last.message ?? last})` : ''}`);
    await sleep(interval);
  }
}

/**
 * Starts code-server with the .vsix installed into fresh directories, a copy of `fixture` as the workspace, and
 * Chromium on it. `settings`: user settings on top of BASE_SETTINGS. `env`: extra environment for code-server (and so
 * the extension host and the mgd server). Returns a session; call close() at the end.
 */
export async function startEditor({ setup, vsix, fixture, settings = {}, env = {}, logName = 'e2e' }) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mgd-e2e-'));
  const userData = path.join(dir, 'user-data');
  const extensions = path.join(dir, 'extensions');
  const workspace = path.join(dir, 'workspace');
  fs.cpSync(fixture, workspace, { recursive: true });
  fs.mkdirSync(path.join(userData, 'User'), { recursive: true });
  const settingsFile = path.join(userData, 'User', 'settings.json');
  fs.writeFileSync(settingsFile, JSON.stringify({ ...BASE_SETTINGS, ...settings }, null, 2));
  fs.mkdirSync(artifactsDir, { recursive: true });
  for (const f of fs.readdirSync(artifactsDir)) if (f.startsWith(`${logName}-`)) fs.rmSync(path.join(artifactsDir, f), { force: true });

  // the mgd server's built-graph and KV caches: the e2e cache's own (not the test suite's MGD_CACHE_DIR), kept between runs
  const csEnv = { ...process.env, MGD_CACHE_DIR: path.join(setup.cache, 'mgd'), ...env, VSCODE_PROXY_URI: '', CS_DISABLE_GETTING_STARTED_OVERRIDE: '1' };
  delete csEnv.ELECTRON_RUN_AS_NODE;
  const common = ['--user-data-dir', userData, '--extensions-dir', extensions, '--disable-telemetry', '--disable-update-check'];
  const installed = Date.now();
  execFileSync(process.execPath, [setup.entry, ...common, '--install-extension', vsix], { env: csEnv, stdio: ['ignore', 'pipe', 'pipe'], timeout: 180_000 });
  const installMs = Date.now() - installed;
  const extDir = fs.readdirSync(extensions).find((d) => d.startsWith('mgd.mgd-'));
  if (!extDir) throw new Error(`the .vsix did not install into ${extensions}: ${fs.readdirSync(extensions).join(', ')}`);

  const port = await freePort();
  const logFile = path.join(artifactsDir, `${logName}-code-server.log`);
  const logFd = fs.openSync(logFile, 'w');
  const cs = spawn(process.execPath, [setup.entry, '--auth', 'none', '--bind-addr', `127.0.0.1:${port}`, ...common, '--disable-workspace-trust', '--disable-getting-started-override', workspace], {
    env: csEnv,
    stdio: ['ignore', logFd, logFd],
    detached: true, // its own process group: close() ends code-server and everything it started
  });
  const url = `http://127.0.0.1:${port}/`;
  await until(async () => (await fetch(`${url}healthz`)).ok, 'code-server to listen', 60_000, 200);

  const require = createRequire(path.join(setup.playwright, 'package.json'));
  const { chromium } = require('playwright-core');
  const browser = await chromium.launch({ executablePath: setup.chromium, headless: true, args: CHROMIUM_ARGS });
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: `http://127.0.0.1:${port}` });
  const page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  await page.goto(`${url}?folder=${encodeURIComponent(workspace)}`);
  await page.waitForSelector('.monaco-workbench .part.statusbar', { timeout: 120_000 });

  let shot = 0;
  const session = {
    dir,
    userData,
    extensions,
    extensionDir: path.join(extensions, extDir),
    workspace,
    settingsFile,
    url,
    page,
    pageErrors,
    installMs,
    codeServer: cs,
    logFile,

    /** A screenshot into the artifacts directory, numbered in order. */
    async screenshot(name) {
      shot++;
      const file = path.join(artifactsDir, `${logName}-${String(shot).padStart(2, '0')}-${name}.png`);
      await page.screenshot({ path: file }).catch(() => {});
      return file;
    },

    /** The mgd status-bar item: its text (icons as `$(name)`) and tooltip, or null before it exists. */
    async status() {
      return await page.evaluate(() => {
        const items = [...document.querySelectorAll('.statusbar-item')];
        const item = items.find((e) => e.id.includes('mgd.status') || /(^|\s)mgd($|\s)/.test(e.textContent ?? ''));
        if (!item) return null;
        const label = item.querySelector('.statusbar-item-label') ?? item;
        let text = '';
        for (const n of label.childNodes) {
          if (n.nodeType === 1 && n.classList.contains('codicon')) text += `$(${[...n.classList].find((c) => c.startsWith('codicon-') && c !== 'codicon-modifier-spin')?.slice(8)})`;
          else text += n.textContent;
        }
        return { text: text.replace(/\s+/g, ' ').trim(), tooltip: item.getAttribute('aria-label') ?? '', id: item.id };
      });
    },

    async waitStatus(icon, timeout = 120_000) {
      return await until(async () => {
        const s = await session.status();
        return s && s.text.startsWith(`$(${icon})`) ? s : null;
      }, `the mgd status bar item to show $(${icon}) (now ${JSON.stringify(await session.status().catch(() => null))})`, timeout, 100);
    },

    /** Runs a command from the command palette by its title, e.g. "mgd: Show Statistics". */
    async command(title) {
      await page.keyboard.press('Escape');
      await page.keyboard.press('F1');
      const input = page.locator('.quick-input-widget input.input');
      await input.waitFor({ state: 'visible', timeout: 15_000 });
      await input.fill(`>${title}`);
      const row = page.locator('.quick-input-list .monaco-list-row', { hasText: title }).first();
      await row.waitFor({ state: 'visible', timeout: 15_000 });
      await input.press('Enter');
      await page.locator('.quick-input-widget').waitFor({ state: 'hidden', timeout: 15_000 }).catch(() => {});
    },

    /**
     * "mgd: Show Statistics" through the palette: waits for its dialog, screenshots it, closes it and returns its
     * message, its detail text and the counters parsed from it (`name: value` lines).
     */
    async stats(shotName = 'stats') {
      await session.command('mgd: Show Statistics');
      const dialog = page.locator('.monaco-dialog-box');
      await dialog.waitFor({ state: 'visible', timeout: 30_000 });
      const message = (await dialog.locator('.dialog-message-text').textContent().catch(() => '')) ?? '';
      const detail = (await dialog.locator('.dialog-message-detail').innerText().catch(() => '')) ?? '';
      await session.screenshot(shotName);
      const counters = {};
      for (const line of detail.split('\n')) {
        const m = /^([\w.]+): (.*)$/.exec(line.trim());
        if (m) counters[m[1]] = Number.isNaN(Number(m[2])) ? m[2] : Number(m[2]);
      }
      await page.keyboard.press('Escape');
      await dialog.waitFor({ state: 'hidden', timeout: 10_000 }).catch(() => {});
      await page.locator('.monaco-editor.focused').first().waitFor({ timeout: 10_000 }).catch(() => {});
      return { message, detail, counters };
    },

    /** Opens a workspace file by Quick Open and waits for its editor to have focus. */
    async open(relPath) {
      await page.keyboard.press('Escape');
      await page.keyboard.press('Control+P');
      const input = page.locator('.quick-input-widget input.input');
      await input.waitFor({ state: 'visible', timeout: 15_000 });
      await input.fill(relPath);
      await page.locator('.quick-input-list .monaco-list-row', { hasText: path.basename(relPath) }).first().waitFor({ state: 'visible', timeout: 30_000 });
      await input.press('Enter');
      await page.locator(`.tab[data-resource-name="${path.basename(relPath)}"], .tab:has-text("${path.basename(relPath)}")`).first().waitFor({ timeout: 15_000 });
      await page.locator('.monaco-editor.focused textarea, .monaco-editor.focused .native-edit-context').first().waitFor({ timeout: 15_000 });
    },

    /** Moves the cursor to the end of a 1-based line (Go to Line), focus in the editor. */
    async endOfLine(line) {
      await page.keyboard.press('Control+G');
      const input = page.locator('.quick-input-widget input.input');
      await input.waitFor({ state: 'visible', timeout: 15_000 });
      await input.fill(`:${line}`);
      await input.press('Enter');
      await page.locator('.quick-input-widget').waitFor({ state: 'hidden', timeout: 15_000 }).catch(() => {});
      await page.keyboard.press('End');
    },

    /** The ghost text shown in the editor now ('' when none): the inline part on the cursor's line, then any lines below. */
    async ghostText() {
      return await page.evaluate(() => {
        const editor = document.querySelector('.monaco-editor.focused');
        if (!editor) return '';
        const lines = new Map();
        for (const e of editor.querySelectorAll('.ghost-text-decoration, .ghost-text-decoration-preview')) {
          const line = e.closest('.view-line') ?? e.parentElement;
          lines.set(line, (lines.get(line) ?? '') + (e.textContent ?? ''));
        }
        const below = [...editor.querySelectorAll('.ghost-text .view-line')].map((l) => l.textContent ?? '');
        return [...lines.values(), ...below].join('\n').replace(/\u00a0/g, ' ');
      });
    },

    async waitGhost(timeout = 60_000) {
      return await until(async () => {
        const t = await session.ghostText();
        return t.trim() ? t : null;
      }, 'ghost text in the editor', timeout, 50);
    },

    /** The mgd server processes (pid, command line) under this code-server: those whose command runs our extension's server. */
    serverPids() {
      const mine = path.join(session.extensionDir, 'server', 'bin', 'mgd.js');
      const out = [];
      for (const pid of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
        try {
          const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
          if (cmd.includes(mine) && cmd.includes('serve')) out.push(Number(pid));
        } catch {
          // gone
        }
      }
      return out;
    },

    /**
     * Changes user settings through the editor, as a user does: "Preferences: Open User Settings (JSON)", the new
     * content pasted, save, close the tab. Resolves once the file is saved; open() a file to type in it again.
     */
    async setSettings(patch) {
      const next = { ...JSON.parse(fs.readFileSync(settingsFile, 'utf8')), ...patch };
      const text = JSON.stringify(next, null, 2);
      await session.command('Preferences: Open User Settings (JSON)');
      await page.locator('.tab.active', { hasText: 'settings.json' }).waitFor({ timeout: 15_000 });
      await page.locator('.monaco-editor.focused').first().waitFor({ timeout: 15_000 });
      await page.keyboard.press('Control+A');
      // pasted, not typed: typing would auto-close quotes and brackets
      await page.evaluate((t) => navigator.clipboard.writeText(t), text);
      await page.keyboard.press('Control+V');
      await session.screenshot('settings-json');
      await page.keyboard.press('Control+S');
      await until(() => {
        try {
          return JSON.stringify(JSON.parse(fs.readFileSync(settingsFile, 'utf8'))) === JSON.stringify(next);
        } catch {
          return false;
        }
      }, 'settings.json to be saved', 15_000);
      await session.command('View: Close Editor'); // Ctrl+W is the browser's
      await page.locator('.tab.active', { hasText: 'settings.json' }).waitFor({ state: 'detached', timeout: 15_000 });
    },

    /** The texts of the notification toasts on screen now. */
    async notifications() {
      return await page.evaluate(() => [...document.querySelectorAll('.notifications-toasts .notification-toast')].map((e) => (e.textContent ?? '').trim()));
    },

    /** The user settings file, changed on disk (behind the editor's back). */
    updateSettings(patch) {
      const cur = JSON.parse(fs.readFileSync(settingsFile, 'utf8'));
      fs.writeFileSync(settingsFile, JSON.stringify({ ...cur, ...patch }, null, 2));
    },

    /** The extension's log (the "mgd" output channel, as the extension host writes it to disk). */
    extensionLog() {
      const logs = path.join(userData, 'logs');
      const files = fs.existsSync(logs) ? fs.readdirSync(logs, { recursive: true }).filter((f) => /(^|\/)\d*-?mgd\.log$/.test(String(f))) : [];
      return files.map((f) => fs.readFileSync(path.join(logs, String(f)), 'utf8')).join('\n');
    },

    async close() {
      try {
        fs.writeFileSync(path.join(artifactsDir, `${logName}-mgd-extension.log`), session.extensionLog());
      } catch {
        // nothing logged
      }
      await browser.close().catch(() => {});
      try {
        process.kill(-cs.pid, 'SIGTERM');
      } catch {
        // already gone
      }
      await sleep(500);
      try {
        process.kill(-cs.pid, 'SIGKILL');
      } catch {
        // already gone
      }
      fs.closeSync(logFd);
      if (!process.env.MGD_E2E_KEEP) fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  return session;
}
