/**
 * Evaluation workspaces: an npm package that ships its TypeScript sources, unpacked with its dependencies' types so
 * that its `src/` type-checks, built once per exact version and cached.
 *
 * Layout of one workspace (`<cache>/eval/workspaces/<name>@<version>/`): the package's tarball contents as published
 * (its package.json keeps `name` and `exports`, so sources that import the package by name resolve to its shipped
 * declarations), its runtime dependencies and their types under node_modules, and a tsconfig.json of ours: the
 * package's own configs reference monorepo files the tarball does not ship. Sites are only taken from files that
 * type-check under that tsconfig, so it need not match the authors' flags, only be a sane strict setting.
 *
 * Built in a temporary directory and renamed into place, like the ONNX cache: a crash or a concurrent build never
 * leaves a half-installed workspace under a valid name.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { cacheRoot } from '../backends/onnx/build-cache.js';
import { BadInputError } from '../errors.js';

const run = promisify(execFile);

/** Bump when the workspace layout or tsconfig changes: old workspaces then stop matching. */
const WORKSPACE_VERSION = 1;
const READY = '.mgd-workspace.json';

/** Our compiler settings for every workspace (see the header for why not the package's own). */
export const WORKSPACE_TSCONFIG = {
  compilerOptions: {
    target: 'ES2022',
    module: 'ESNext',
    moduleResolution: 'bundler',
    lib: ['ES2022', 'DOM', 'DOM.Iterable'],
    // Explicit, so @types packages of directories above the cache (a checkout's node_modules) never leak in.
    types: ['node'],
    strict: true,
    skipLibCheck: true,
    noEmit: true,
    allowImportingTsExtensions: true,
    resolveJsonModule: true,
  },
  include: ['src'],
  exclude: ['node_modules', '**/*.test.ts', '**/*.spec.ts', '**/*.test-d.ts', '**/tests/**', '**/test/**', '**/__tests__/**', '**/spec/**'],
};

export interface PackageSpec {
  name: string;
  /** An exact version, or a range / tag that `npm pack` resolves. */
  version: string;
}

export interface Workspace {
  name: string;
  /** The exact version unpacked. */
  version: string;
  dir: string;
}

const NAME = /^(@[a-z0-9][\w.-]*\/)?[a-z0-9][\w.-]*$/i;
const EXACT = /^\d+\.\d+\.\d+(-[\w.-]+)?$/;

/** `zod@4.6.7`, `@trpc/server@11.25.2` -> name and version (the version is required: tasks pin it). */
export function parsePackageSpec(spec: string): PackageSpec {
  const at = spec.lastIndexOf('@');
  const name = at > 0 ? spec.slice(0, at) : spec;
  const version = at > 0 ? spec.slice(at + 1) : '';
  if (!NAME.test(name)) throw new BadInputError(`"${spec}" is not an npm package name (NAME@VERSION)`);
  if (!version || /\s/.test(version)) throw new BadInputError(`"${spec}" needs a version (NAME@VERSION, e.g. zod@4.6.7)`);
  return { name, version };
}

/** True when a file under src/ is a source the evaluation may use: TypeScript, not a declaration, not a test. */
export function isSourceFile(rel: string): boolean {
  const p = rel.split(path.sep).join('/');
  if (!p.startsWith('src/') || !/\.(ts|mts|cts)$/.test(p) || /\.d\.[mc]?ts$/.test(p)) return false;
  return !/(^|\/)(tests?|__tests__|spec|__mocks__|fixtures?|bench(marks?)?)\//.test(p) && !/\.(test|spec|test-d|bench)\.[mc]?ts$/.test(p);
}

function workspacesRoot(): string {
  return path.join(cacheRoot(), 'eval', 'workspaces');
}

function workspaceDir(name: string, version: string): string {
  return path.join(workspacesRoot(), `${name.replace('/', '+')}@${version}`);
}

function readyWorkspace(name: string, version: string): Workspace | null {
  const dir = workspaceDir(name, version);
  try {
    const meta = JSON.parse(fs.readFileSync(path.join(dir, READY), 'utf8')) as { version?: number };
    if (meta.version === WORKSPACE_VERSION) return { name, version, dir };
  } catch {
    // absent or unreadable: (re)build below
  }
  if (fs.existsSync(dir)) fs.rmSync(dir, { recursive: true, force: true });
  return null;
}

/**
 * The workspace of `spec`, built on first use: `npm pack`, system `tar`, then `npm install --ignore-scripts` of its
 * runtime dependencies, the `@types/*` among its peer dependencies and `@types/node`. Failures (unknown package,
 * no TypeScript sources, no network) are one-line BadInputErrors.
 */
export async function ensureWorkspace(spec: PackageSpec, log: (line: string) => void = () => {}): Promise<Workspace> {
  if (EXACT.test(spec.version)) {
    const ready = readyWorkspace(spec.name, spec.version);
    if (ready) return ready;
  }
  const root = workspacesRoot();
  fs.mkdirSync(root, { recursive: true });
  const tmp = fs.mkdtempSync(path.join(root, '.build-'));
  try {
    log(`eval: fetching ${spec.name}@${spec.version}`);
    const tarball = await npmPack(spec, tmp);
    const ws = path.join(tmp, 'ws');
    fs.mkdirSync(ws);
    try {
      await run('tar', ['-xzf', tarball, '-C', ws, '--strip-components=1', '--no-same-owner'], { maxBuffer: 1 << 24 });
    } catch (e) {
      throw new BadInputError(`cannot unpack ${path.basename(tarball)}: ${lastLine(e)}`);
    }
    const pkg = JSON.parse(fs.readFileSync(path.join(ws, 'package.json'), 'utf8')) as Record<string, unknown>;
    const version = String(pkg.version);
    const existing = readyWorkspace(spec.name, version);
    if (existing) return existing; // a range resolved to a version already built
    if (!hasSources(path.join(ws, 'src'))) throw new BadInputError(`${spec.name}@${version} ships no TypeScript sources under src/ (nothing to evaluate)`);
    writeWorkspaceManifest(ws, pkg);
    fs.writeFileSync(path.join(ws, 'tsconfig.json'), JSON.stringify(WORKSPACE_TSCONFIG, null, 2) + '\n');
    log(`eval: installing the dependencies of ${spec.name}@${version}`);
    await npm(['install', '--ignore-scripts', '--omit=dev', '--legacy-peer-deps', '--no-audit', '--no-fund', '--no-package-lock'], ws, `installing the dependencies of ${spec.name}@${version}`);
    fs.writeFileSync(path.join(ws, READY), JSON.stringify({ version: WORKSPACE_VERSION, package: `${spec.name}@${version}` }) + '\n');
    const dir = workspaceDir(spec.name, version);
    try {
      fs.renameSync(ws, dir);
    } catch (e) {
      if (!readyWorkspace(spec.name, version)) throw e; // otherwise a concurrent build finished first: use its copy
    }
    return { name: spec.name, version, dir };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * The package's manifest made installable: runtime dependencies plus types, no dev dependencies (often `workspace:`
 * links of the authors' monorepo), no scripts. `name` and `exports` stay: sources importing the package by name
 * resolve through them to the declarations it ships.
 */
function writeWorkspaceManifest(ws: string, pkg: Record<string, unknown>): void {
  const deps = { ...((pkg.dependencies as Record<string, string> | undefined) ?? {}) };
  for (const [name, range] of Object.entries((pkg.peerDependencies as Record<string, string> | undefined) ?? {})) {
    if (name.startsWith('@types/')) deps[name] ??= range;
  }
  deps['@types/node'] ??= '^20';
  const { devDependencies: _d, scripts: _s, peerDependencies: _p, peerDependenciesMeta: _m, optionalDependencies: _o, workspaces: _w, ...rest } = pkg;
  fs.writeFileSync(path.join(ws, 'package.json'), JSON.stringify({ ...rest, private: true, dependencies: deps }, null, 2) + '\n');
}

function hasSources(dir: string): boolean {
  if (!fs.existsSync(dir)) return false;
  const files = fs.readdirSync(dir, { recursive: true, encoding: 'utf8' });
  return files.some((f) => isSourceFile(path.join('src', f)));
}

async function npmPack(spec: PackageSpec, dest: string): Promise<string> {
  const stdout = await npm(['pack', `${spec.name}@${spec.version}`, '--json', '--pack-destination', dest], dest, `fetching ${spec.name}@${spec.version}`);
  let filename: string | undefined;
  try {
    filename = (JSON.parse(stdout) as Array<{ filename?: string }>)[0]?.filename;
  } catch {
    // fall through to the directory listing
  }
  filename ??= fs.readdirSync(dest).find((f) => f.endsWith('.tgz'));
  if (!filename) throw new BadInputError(`npm pack ${spec.name}@${spec.version} produced no tarball`);
  // scoped names are packed as scope-name-version.tgz
  return path.join(dest, filename.replace(/^@/, '').replace('/', '-'));
}

async function npm(args: string[], cwd: string, what: string): Promise<string> {
  try {
    const { stdout } = await run('npm', args, { cwd, maxBuffer: 1 << 26, env: { ...process.env, npm_config_update_notifier: 'false' } });
    return stdout;
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    if (err.code === 'ENOENT') throw new BadInputError(`${what}: npm is not on PATH`);
    throw new BadInputError(`${what} failed: ${npmError(err.stderr ?? '') ?? lastLine(e)}`);
  }
}

/** The line of npm's stderr that says what went wrong (E404, ENOTFOUND...), not its log-file boilerplate. */
function npmError(stderr: string): string | null {
  const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l.startsWith('npm error') && !/A complete log|^npm error\s*$/.test(l));
  const code = lines.find((l) => /npm error code /.test(l));
  const detail = lines.find((l) => !/npm error code /.test(l) && !/npm error (errno|syscall|network) ?$/.test(l));
  const text = [code?.replace('npm error code ', ''), detail?.replace(/^npm error\s*/, '')].filter(Boolean).join(': ');
  return text || null;
}

function lastLine(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  const lines = msg.split('\n').map((l) => l.trim()).filter(Boolean);
  return lines[lines.length - 1] ?? msg;
}
