// Sets up what the end-to-end tests drive: code-server (VS Code in a browser, from npm) and Debian's Chromium through
// playwright-core, installed into a cache outside the clone so the repository's own node_modules are never touched.
//
//   node scripts/e2e/setup.mjs [--json]   # installs what is missing (cold: ~1 min here, plus apt), says what it did
//
// Cache: ${MGD_E2E_CACHE:-~/.cache/mgd-e2e}. A stamp file there records a finished setup, so a warm run only checks
// that the pieces are still in place. What cannot be installed on this machine (no apt-get, not root, no network for
// the first install) is not an error: the result says `ready: false` with the reason, the tests skip with it, and
// this script still exits 0 (a real failure of a step that could run exits 1).
//
// code-server's own postinstall would download ripgrep from GitHub, so it is installed with --ignore-scripts and its
// native modules are built here with node-gyp against the local Node headers (npm's `nodedir` config).
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const CODE_SERVER_VERSION = '4.99.4'; // VS Code 1.99: the last code-server line that runs on Node 20
export const PLAYWRIGHT_VERSION = '1.65.1';
const APT_PACKAGES = ['libkrb5-dev', 'libxkbfile-dev', 'libsecret-1-dev', 'pkg-config', 'ripgrep', 'chromium'];
const VSCODE_NATIVE = ['@parcel/watcher', '@vscode/spdlog', 'native-watchdog', 'node-pty', '@vscode/deviceid', 'kerberos'];
const STAMP_VERSION = 1;

export function cacheDir() {
  return path.resolve(process.env.MGD_E2E_CACHE || path.join(os.homedir(), '.cache', 'mgd-e2e'));
}

/** The pieces a set-up cache holds. */
export function paths(cache = cacheDir()) {
  const modules = path.join(cache, 'node_modules');
  return {
    cache,
    codeServer: path.join(modules, 'code-server'),
    entry: path.join(modules, 'code-server', 'out', 'node', 'entry.js'),
    playwright: path.join(modules, 'playwright-core'),
    chromium: findChromium(),
    stamp: path.join(cache, 'setup.json'),
  };
}

function findChromium() {
  for (const p of [process.env.MGD_E2E_CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser']) if (p && fs.existsSync(p)) return p;
  return null;
}

function log(m) {
  process.stderr.write(`e2e setup: ${m}\n`);
}

function run(cmd, args, cwd, extraEnv = {}) {
  const r = spawnSync(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', env: { ...process.env, ...extraEnv } });
  if (r.status !== 0) {
    const tail = `${r.stdout ?? ''}\n${r.stderr ?? ''}`.trim().split('\n').slice(-15).join('\n');
    throw new Error(`${cmd} ${args.join(' ')} (in ${cwd}) exited ${r.status ?? r.signal}:\n${tail}`);
  }
  return r.stdout;
}

function have(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

/** node-gyp as npm ships it (no download), else npx's. */
function nodeGyp() {
  const candidates = [path.join(path.dirname(path.dirname(fs.realpathSync(process.execPath))), 'lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js')];
  try {
    const npmRoot = execFileSync('npm', ['root', '-g'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    candidates.push(path.join(npmRoot, 'npm/node_modules/node-gyp/bin/node-gyp.js'));
  } catch {
    // no global npm root
  }
  const found = candidates.find((p) => fs.existsSync(p));
  return found ? [process.execPath, found] : ['npx', '--yes', 'node-gyp'];
}

/** The local Node headers node-gyp should build against (npm's nodedir config, else the usual places). */
function nodedirEnv() {
  if (process.env.npm_config_nodedir) return {};
  for (const d of ['/usr', path.dirname(path.dirname(process.execPath))]) {
    if (fs.existsSync(path.join(d, 'include', 'node', 'node.h'))) return { npm_config_nodedir: d };
  }
  return {};
}

function gyp(args, cwd) {
  const [cmd, ...pre] = nodeGyp();
  run(cmd, [...pre, ...args], cwd, nodedirEnv());
}

function aptMissing() {
  if (!have('dpkg-query')) return APT_PACKAGES;
  const r = spawnSync('dpkg-query', ['-W', '-f=${Package} ${Status}\n', ...APT_PACKAGES], { encoding: 'utf8' });
  const ok = new Set((r.stdout ?? '').split('\n').filter((l) => l.endsWith('install ok installed')).map((l) => l.split(' ')[0]));
  return APT_PACKAGES.filter((p) => !ok.has(p));
}

/** Installs the Debian packages that are missing; returns a reason string when that cannot be done here. */
function ensureApt() {
  const missing = aptMissing();
  if (missing.length === 0) return null;
  if (!have('apt-get')) return `no apt-get on this machine to install ${missing.join(', ')}`;
  let asRoot = [];
  if (process.getuid?.() !== 0) {
    if (have('sudo') && spawnSync('sudo', ['-n', 'true'], { stdio: 'ignore' }).status === 0) asRoot = ['sudo', '-n'];
    else return `${missing.join(', ')} missing and apt-get needs root`;
  }
  log(`apt-get install ${missing.join(' ')}`);
  const apt = (args) => spawnSync(asRoot[0] ?? 'apt-get', [...asRoot.slice(1), ...(asRoot.length ? ['apt-get'] : []), ...args], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  const u = apt(['update', '-qq']);
  if (u.status !== 0) return `apt-get update failed (no network?): ${(u.stderr ?? '').trim().split('\n').pop()}`;
  const i = apt(['install', '-y', '-qq', '--no-install-recommends', ...missing]);
  if (i.status !== 0) return `apt-get install ${missing.join(' ')} failed: ${(i.stderr ?? '').trim().split('\n').pop()}`;
  return null;
}

function symlink(target, at) {
  fs.rmSync(at, { recursive: true, force: true });
  fs.mkdirSync(path.dirname(at), { recursive: true });
  fs.symlinkSync(target, at);
}

function installCodeServer(p) {
  fs.mkdirSync(p.cache, { recursive: true });
  if (!fs.existsSync(path.join(p.cache, 'package.json'))) fs.writeFileSync(path.join(p.cache, 'package.json'), '{ "private": true }\n');
  log(`npm install code-server@${CODE_SERVER_VERSION} playwright-core@${PLAYWRIGHT_VERSION} into ${p.cache}`);
  run('npm', ['install', '--prefix', p.cache, '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error', `code-server@${CODE_SERVER_VERSION}`, `playwright-core@${PLAYWRIGHT_VERSION}`], p.cache);

  // argon2 (code-server's password hashing; loaded at start even with --auth none): node-pre-gyp looks in lib/binding/napi-v3
  const argon2 = [path.join(p.codeServer, 'node_modules', 'argon2'), path.join(p.cache, 'node_modules', 'argon2')].find((d) => fs.existsSync(d));
  if (!argon2) throw new Error('argon2 is not installed beside code-server');
  log('building argon2');
  gyp(['rebuild', '--module_name=argon2', '--module_path=./lib/binding/napi-v3', '--napi_build_version=3'], argon2);
  fs.mkdirSync(path.join(argon2, 'lib/binding/napi-v3'), { recursive: true });
  fs.copyFileSync(path.join(argon2, 'build/Release/argon2.node'), path.join(argon2, 'lib/binding/napi-v3/argon2.node'));

  // VS Code's own dependencies, then its native modules
  const vscode = path.join(p.codeServer, 'lib', 'vscode');
  log('npm install in lib/vscode');
  run('npm', ['install', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error'], vscode);
  const rg = spawnSync('sh', ['-c', 'command -v rg'], { encoding: 'utf8' }).stdout.trim();
  if (!rg) throw new Error('ripgrep (rg) is not on PATH');
  symlink(rg, path.join(vscode, 'node_modules/@vscode/ripgrep/bin/rg'));
  for (const m of VSCODE_NATIVE) {
    const dir = path.join(vscode, 'node_modules', m);
    if (!fs.existsSync(path.join(dir, 'binding.gyp'))) throw new Error(`lib/vscode/node_modules/${m} has no binding.gyp`);
    log(`building ${m}`);
    gyp(['rebuild'], dir);
  }
  symlink('node_modules', path.join(vscode, 'node_modules.asar'));
  symlink('code-linux.sh', path.join(vscode, 'bin/remote-cli/code-server'));
  symlink('browser-linux.sh', path.join(vscode, 'bin/helpers/browser.sh'));
  log('npm install in lib/vscode/extensions');
  run('npm', ['install', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error'], path.join(vscode, 'extensions'));
}

function intact(p) {
  try {
    const stamp = JSON.parse(fs.readFileSync(p.stamp, 'utf8'));
    if (stamp.version !== STAMP_VERSION || stamp.codeServer !== CODE_SERVER_VERSION || stamp.playwright !== PLAYWRIGHT_VERSION) return false;
  } catch {
    return false;
  }
  return [p.entry, path.join(p.playwright, 'package.json'), path.join(p.codeServer, 'lib/vscode/node_modules.asar'), path.join(p.codeServer, 'lib/vscode/node_modules/node-pty/build/Release/pty.node')].every((f) => fs.existsSync(f));
}

/**
 * Makes sure code-server, playwright-core and Chromium are there. Resolves to `{ ready: true, ...paths, seconds }`,
 * or `{ ready: false, reason }` when this machine cannot have them; throws when a step that could run failed.
 */
export function ensure() {
  const started = Date.now();
  if (Number(process.versions.node.split('.')[0]) !== 20) return { ready: false, reason: `code-server ${CODE_SERVER_VERSION} needs Node 20 (this is ${process.version})` };
  if (process.platform !== 'linux') return { ready: false, reason: `the e2e setup knows Debian/Ubuntu only (this is ${process.platform})` };
  const aptReason = ensureApt();
  if (aptReason) return { ready: false, reason: aptReason };
  let p = paths();
  if (!p.chromium) return { ready: false, reason: 'no Chromium found (/usr/bin/chromium); set MGD_E2E_CHROMIUM' };
  let cold = false;
  if (!intact(p)) {
    cold = true;
    fs.rmSync(p.stamp, { force: true });
    try {
      installCodeServer(p);
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      // the first install needs the npm registry: without network, skip rather than fail
      const offline = /ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ETIMEDOUT|ENETUNREACH|ECONNRESET|network/i;
      if (offline.test(msg) && !fs.existsSync(p.entry)) return { ready: false, reason: `the npm registry is unreachable for the first install of code-server (${msg.split('\n').find((l) => offline.test(l))?.trim()})` };
      throw e;
    }
    fs.writeFileSync(p.stamp, JSON.stringify({ version: STAMP_VERSION, codeServer: CODE_SERVER_VERSION, playwright: PLAYWRIGHT_VERSION, at: new Date().toISOString(), seconds: (Date.now() - started) / 1000 }, null, 2) + '\n');
    p = paths();
  }
  return { ready: true, cold, seconds: Math.round((Date.now() - started) / 100) / 10, ...p };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  try {
    const r = ensure();
    if (!r.ready) log(`skipped: ${r.reason}`);
    else log(`${r.cold ? 'installed' : 'cached'} in ${r.seconds} s: code-server ${CODE_SERVER_VERSION} in ${r.cache}, ${r.chromium}`);
    if (process.argv.includes('--json')) process.stdout.write(JSON.stringify(r) + '\n');
  } catch (e) {
    log(`failed: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  }
}
