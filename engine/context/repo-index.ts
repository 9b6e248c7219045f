/**
 * The repository index: for every source file of a workspace, what it defines (with signatures) and imports, by
 * tree-sitter. Retrieval (retrieve.ts) asks it for definitions by name, a file's outline and where an import leads.
 *
 * Indexing never blocks a completion: the workspace is walked and parsed in small slices between requests
 * (setImmediate), and retrieval uses what is indexed so far. Open documents are re-indexed from the editor's text on
 * each request. The index is persisted per workspace with each file's mtime, size and content hash, so a restart
 * re-parses only what changed. The walk is bounded (file count, file size), skips dependency and build directories,
 * hidden directories, symbolic links (no loops), binary, minified and generated files, and files that vanish
 * mid-walk; each skip reason is counted and logged once.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { syntaxLanguageOf, type SyntaxLanguage } from '../analysis/syntax.js';
import { extractSymbols, type Definition, type FileSymbols } from './symbols.js';

export interface IndexedFile {
  /** Workspace-relative, with `/`. */
  path: string;
  language: SyntaxLanguage;
  hash: string;
  mtimeMs: number;
  size: number;
  symbols: FileSymbols;
}

export interface RepoIndexOptions {
  maxFiles?: number;
  maxFileBytes?: number;
  /** Where to persist the index (null: not persisted). */
  persistFile?: string | null;
  log?: (message: string) => void;
}

const SKIP_DIRS = new Set(['node_modules', 'dist', 'build', 'out', 'coverage', 'target', 'vendor', '__pycache__', 'venv', 'bower_components']);
const INDEX_VERSION = 1;
/**
 * How long one slice of the walk may hold the event loop (the server's thread: a keystroke's request waits behind
 * it). Counted, not estimated: files differ a lot in how long they take to parse.
 */
const SLICE_MS = 8;
const RECENT_DOCUMENTS = 16;

export class RepoIndex {
  readonly files = new Map<string, IndexedFile>();
  private readonly byName = new Map<string, { file: string; def: Definition }[]>();
  /** Recently edited documents (path -> text), newest last: the pool for similar-code retrieval. */
  readonly recent = new Map<string, string>();
  readonly skipped: Record<string, number> = {};
  private started = false;
  private done = false;
  private persisted = new Map<string, IndexedFile>();
  private readonly log: (message: string) => void;
  private readonly maxFiles: number;
  private readonly maxFileBytes: number;
  private idle: Promise<void> = Promise.resolve();
  private realRoot: string | null = null;

  constructor(
    readonly workspace: string,
    private readonly o: RepoIndexOptions = {},
  ) {
    this.log = o.log ?? (() => {});
    this.maxFiles = o.maxFiles ?? 20_000;
    this.maxFileBytes = o.maxFileBytes ?? 1_000_000;
  }

  /** Starts indexing in the background (once). `whenIndexed()` resolves when the walk is complete. */
  start(): void {
    if (this.started) return;
    this.started = true;
    this.loadPersisted();
    this.idle = new Promise<void>((resolve) => {
      const dirs = [this.workspace];
      const files: string[] = [];
      const step = () => {
        try {
          // walk directories, then parse files, until the slice's time is spent (at least one of each)
          const until = performance.now() + SLICE_MS;
          for (let n = 0; dirs.length && (n === 0 || performance.now() < until); n++) this.walkDir(dirs.pop()!, dirs, files);
          for (let n = 0; files.length && (n === 0 || performance.now() < until); n++) this.indexFile(files.pop()!);
        } catch (e) {
          this.log(`indexing ${this.workspace} stopped: ${(e as Error).message.split('\n')[0]}`);
          dirs.length = files.length = 0;
        }
        if (dirs.length || files.length) setImmediate(step);
        else {
          this.done = true;
          this.persisted.clear();
          const skips = Object.entries(this.skipped).map(([k, v]) => `${v} ${k}`);
          if (skips.length) this.log(`indexed ${this.files.size} files of ${this.workspace}; skipped ${skips.join(', ')}`);
          this.save();
          resolve();
        }
      };
      setImmediate(step);
    });
  }

  /**
   * Keeps the index current while files change on disk (saves, git checkouts, generated code): a recursive watch
   * (inotify on Linux) marks changed paths, which are re-indexed in a later slice. Where watching is not possible
   * the index stays as built, and open documents still come from the editor. Returns a function that stops it.
   */
  watch(): () => void {
    let watcher: fs.FSWatcher;
    const dirty = new Set<string>();
    let scheduled = false;
    try {
      watcher = fs.watch(this.workspace, { recursive: true, persistent: false }, (_event, name) => {
        if (!name) return;
        const rel = name.toString().split(path.sep).join('/');
        if (rel.split('/').some((part) => part.startsWith('.') || SKIP_DIRS.has(part)) || !syntaxLanguageOf(rel)) return;
        dirty.add(rel);
        if (scheduled) return;
        scheduled = true;
        // coalesce bursts (a checkout touches many files) into one pass a little later
        setTimeout(() => {
          scheduled = false;
          for (const f of dirty) {
            if (this.recent.has(f)) continue; // open in the editor: its text wins
            if (fs.existsSync(path.join(this.workspace, f))) this.indexFile(path.join(this.workspace, f));
            else this.remove(f);
          }
          dirty.clear();
        }, 200).unref();
      });
    } catch (e) {
      this.log(`not watching ${this.workspace} for changes: ${(e as Error).message.split('\n')[0]}`);
      return () => {};
    }
    watcher.on('error', () => watcher.close());
    return () => watcher.close();
  }

  whenIndexed(): Promise<void> {
    this.start();
    return this.idle;
  }

  get complete(): boolean {
    return this.done;
  }

  /** Re-indexes an open document from the editor's text (no disk read) and marks it recently edited. */
  update(absPath: string, text: string): void {
    const rel = this.relative(absPath);
    if (rel === null) return;
    const language = syntaxLanguageOf(absPath);
    this.recent.delete(rel);
    this.recent.set(rel, text);
    if (this.recent.size > RECENT_DOCUMENTS) this.recent.delete(this.recent.keys().next().value!);
    if (!language) return;
    const hash = sha(text);
    if (this.files.get(rel)?.hash === hash) return;
    this.put({ path: rel, language, hash, mtimeMs: Date.now(), size: text.length, symbols: safeExtract(language, text) });
  }

  /** Definitions named `name` anywhere in the workspace. */
  definitions(name: string): readonly { file: string; def: Definition }[] {
    return this.byName.get(name) ?? [];
  }

  /** The workspace file an import specifier of `fromRel` leads to (relative specifiers; TS/JS extension rules). */
  resolveImport(fromRel: string, spec: string): string | null {
    if (!spec.startsWith('.')) return this.resolveModulePath(spec);
    const base = path.posix.join(path.posix.dirname(fromRel), spec);
    const stem = base.replace(/\.(m|c)?js$/, '');
    for (const candidate of [base, `${stem}.ts`, `${stem}.tsx`, `${stem}.mts`, `${stem}.js`, `${stem}.jsx`, `${stem}/index.ts`, `${stem}/index.js`, `${base}.py`])
      if (this.files.has(candidate)) return candidate;
    return null;
  }

  /** Python-style dotted modules (`shapes.accounts`) to files. */
  private resolveModulePath(spec: string): string | null {
    if (!/^[\w.]+$/.test(spec)) return null;
    const p = spec.replace(/\./g, '/');
    for (const candidate of [`${p}.py`, `${p}/__init__.py`, `src/${p}.py`]) if (this.files.has(candidate)) return candidate;
    return null;
  }

  stats(): { files: number; definitions: number; complete: boolean; skipped: Record<string, number> } {
    let definitions = 0;
    for (const f of this.files.values()) definitions += f.symbols.definitions.length;
    return { files: this.files.size, definitions, complete: this.done, skipped: { ...this.skipped } };
  }

  relative(absPath: string): string | null {
    const rel = path.relative(this.workspace, absPath);
    if (rel.startsWith('..') || path.isAbsolute(rel)) return null;
    return rel.split(path.sep).join('/');
  }

  private walkDir(dir: string, dirs: string[], files: string[]): void {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      this.skip('unreadable or vanished directories');
      return;
    }
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      const abs = path.join(dir, e.name);
      // Dirent types come from lstat: symbolic links are neither, and are never followed
      if (e.isSymbolicLink()) {
        this.skip('symbolic links');
        continue;
      }
      if (e.isDirectory()) {
        if (!SKIP_DIRS.has(e.name)) dirs.push(abs);
      } else if (e.isFile() && syntaxLanguageOf(e.name)) {
        if (this.files.size + files.length >= this.maxFiles) {
          this.skip(`files over the limit of ${this.maxFiles}`);
          continue;
        }
        files.push(abs);
      }
    }
  }

  private indexFile(abs: string): void {
    const rel = this.relative(abs)!;
    const language = syntaxLanguageOf(abs)!;
    let stat: fs.Stats;
    try {
      // lstat: a symbolic link is never followed (the walk skips them; the watcher reports them too when they
      // appear later), and a path under a linked directory must still resolve inside the workspace
      stat = fs.lstatSync(abs);
      if (stat.isFile() && !this.inside(fs.realpathSync(abs))) return this.skip('files that resolve outside the workspace');
    } catch {
      this.skip('files that vanished');
      return;
    }
    if (!stat.isFile()) return this.skip('symbolic links and other non-files');
    if (stat.size > this.maxFileBytes) return this.skip(`files over ${this.maxFileBytes} bytes`);
    if (this.recent.has(rel)) return; // the editor's text is newer than the disk's
    const known = this.persisted.get(rel) ?? this.files.get(rel);
    if (known && known.mtimeMs === stat.mtimeMs && known.size === stat.size) {
      this.put(known);
      return;
    }
    let buf: Buffer;
    try {
      buf = fs.readFileSync(abs);
    } catch {
      this.skip('files that vanished');
      return;
    }
    if (buf.subarray(0, 8192).includes(0)) return this.skip('binary files');
    const text = buf.toString('utf8');
    if (looksGenerated(text)) return this.skip('minified or generated files');
    const hash = sha(text);
    const symbols = known?.hash === hash ? known.symbols : safeExtract(language, text);
    this.put({ path: rel, language, hash, mtimeMs: stat.mtimeMs, size: stat.size, symbols });
  }

  private remove(rel: string): void {
    const old = this.files.get(rel);
    if (!old) return;
    for (const d of old.symbols.definitions) this.byName.set(d.name, (this.byName.get(d.name) ?? []).filter((x) => x.file !== rel));
    this.files.delete(rel);
  }

  private put(file: IndexedFile): void {
    const old = this.files.get(file.path);
    if (old) for (const d of old.symbols.definitions) this.byName.set(d.name, (this.byName.get(d.name) ?? []).filter((x) => x.file !== file.path));
    this.files.set(file.path, file);
    for (const def of file.symbols.definitions) {
      const list = this.byName.get(def.name) ?? [];
      list.push({ file: file.path, def });
      this.byName.set(def.name, list);
    }
  }

  /** Whether a resolved path lies in the workspace (itself resolved once: the workspace may be reached through a link). */
  private inside(real: string): boolean {
    let root: string;
    try {
      root = (this.realRoot ??= fs.realpathSync(this.workspace));
    } catch {
      return false;
    }
    const rel = path.relative(root, real);
    return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
  }

  private skip(reason: string): void {
    this.skipped[reason] = (this.skipped[reason] ?? 0) + 1;
  }

  private loadPersisted(): void {
    if (!this.o.persistFile) return;
    try {
      const data = JSON.parse(fs.readFileSync(this.o.persistFile, 'utf8')) as { version: number; workspace: string; files: IndexedFile[] };
      if (data.version !== INDEX_VERSION || data.workspace !== this.workspace || !Array.isArray(data.files)) return;
      for (const f of data.files) this.persisted.set(f.path, f);
    } catch {
      // no index yet, or a damaged one: index from scratch
    }
  }

  /** Writes the index to its persist file (at the end of the walk, and when the engine shuts down). */
  save(): void {
    if (!this.o.persistFile || !this.done) return;
    const tmp = `${this.o.persistFile}.${process.pid}.tmp`;
    try {
      fs.mkdirSync(path.dirname(this.o.persistFile), { recursive: true });
      fs.writeFileSync(tmp, JSON.stringify({ version: INDEX_VERSION, workspace: this.workspace, files: [...this.files.values()] }));
      fs.renameSync(tmp, this.o.persistFile);
    } catch (e) {
      fs.rmSync(tmp, { force: true });
      this.log(`could not persist the index of ${this.workspace}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
}

function sha(text: string): string {
  return crypto.createHash('sha1').update(text).digest('hex');
}

function safeExtract(language: SyntaxLanguage, text: string): FileSymbols {
  try {
    return extractSymbols(language, text);
  } catch {
    return { definitions: [], imports: [] };
  }
}

/** Minified bundles and generated files: very long lines on average, or a source map. */
function looksGenerated(text: string): boolean {
  if (/^\/\/[#@] sourceMappingURL=/m.test(text.slice(-500))) return true;
  const lines = text.split('\n', 2000);
  const avg = text.slice(0, lines.reduce((a, l) => a + l.length + 1, 0)).length / Math.max(1, lines.length);
  return avg > 200;
}
