/**
 * Language servers the generic LSP oracle can use, by language. Pyright ships with mgd (an npm dependency), so
 * Python is monitored out of the box; the others are used when their executable is on PATH. A user's configuration
 * (LSP settings `mgd.languageServers`, CLI `--language-server`) adds languages or replaces these.
 */
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { LanguageServerConfig } from './lsp-oracle.js';

const require = createRequire(import.meta.url);

/** The built-in configurations whose server can be found on this machine, by language. */
export function defaultLanguageServers(): Record<string, LanguageServerConfig> {
  const servers: Record<string, LanguageServerConfig> = {};
  const pyright = resolvePyright();
  if (pyright) {
    servers.python = {
      name: 'pyright',
      languageId: 'python',
      extensions: ['.py', '.pyi'],
      command: [process.execPath, pyright, '--stdio'],
      trustIncompleteLists: true,
      // analysis of the open shadow document only: completions do not need the workspace's diagnostics
      settings: { python: { analysis: { diagnosticMode: 'openFilesOnly', typeCheckingMode: 'basic', autoImportCompletions: false } } },
    };
  }
  const onPath: [string, LanguageServerConfig][] = [
    ['go', { languageId: 'go', extensions: ['.go'], command: ['gopls'] }],
    ['rust', { languageId: 'rust', extensions: ['.rs'], command: ['rust-analyzer'] }],
    ['java', { languageId: 'java', extensions: ['.java'], command: ['jdtls'] }],
    ['c', { languageId: 'c', extensions: ['.c', '.h'], command: ['clangd'] }],
    ['cpp', { languageId: 'cpp', extensions: ['.cc', '.cpp', '.cxx', '.hpp', '.hh'], command: ['clangd'] }],
  ];
  for (const [language, config] of onPath) if (findExecutable(config.command[0]!)) servers[language] = config;
  return servers;
}

/**
 * TypeScript 7's native language server (`tsgo --lsp --stdio`, the Go port, from @typescript/native-preview), or
 * null where its binary for this platform is not installed. Measured on the same sites as typescript@6's
 * in-process service it answers the same, about five times faster (`mgd bench oracle`, ARCHITECTURE.md), so it is
 * the default oracle for TypeScript and JavaScript where it exists.
 */
export function typescriptNativeServer(): LanguageServerConfig | null {
  const exe = resolveTsgo();
  if (!exe) return null;
  return {
    name: 'tsgo',
    languageId: 'typescript',
    languageIds: { '.tsx': 'typescriptreact', '.js': 'javascript', '.mjs': 'javascript', '.cjs': 'javascript', '.jsx': 'javascriptreact' },
    extensions: EXTENSIONS.typescript!,
    command: [exe, '--lsp', '--stdio'],
  };
}

function resolveTsgo(): string | null {
  try {
    // the platform binary is an optional dependency of the preview package: resolve it from there
    const fromPreview = createRequire(require.resolve('@typescript/native-preview/package.json'));
    const dir = path.dirname(fromPreview.resolve(`@typescript/native-preview-${process.platform}-${process.arch}/package.json`));
    const exe = path.join(dir, 'lib', process.platform === 'win32' ? 'tsgo.exe' : 'tsgo');
    fs.accessSync(exe, fs.constants.X_OK);
    return exe;
  } catch {
    return null;
  }
}

/**
 * Parses `language=command args...` (the CLI's --language-server) into a configuration; the extensions default to
 * the language's usual ones.
 */
export function parseLanguageServerSpec(spec: string): [string, LanguageServerConfig] {
  const eq = spec.indexOf('=');
  if (eq <= 0 || eq === spec.length - 1) throw new Error(`--language-server wants language=command, got "${spec}"`);
  const language = spec.slice(0, eq).trim();
  const command = spec.slice(eq + 1).trim().split(/\s+/);
  return [language, { languageId: language, extensions: EXTENSIONS[language] ?? [`.${language}`], command }];
}

const EXTENSIONS: Record<string, string[]> = {
  python: ['.py', '.pyi'],
  go: ['.go'],
  rust: ['.rs'],
  java: ['.java'],
  c: ['.c', '.h'],
  cpp: ['.cc', '.cpp', '.cxx', '.hpp', '.hh'],
  typescript: ['.ts', '.tsx', '.mts', '.cts', '.js', '.jsx', '.mjs', '.cjs'],
  ruby: ['.rb'],
  csharp: ['.cs'],
  kotlin: ['.kt'],
  swift: ['.swift'],
};

function resolvePyright(): string | null {
  try {
    return require.resolve('pyright/langserver.index.js');
  } catch {
    return null;
  }
}

function findExecutable(name: string): string | null {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    try {
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return null;
}
