/**
 * Picking dot-completion sites in a package's sources (after DotPrompts, microsoft/monitors4codegen): member accesses
 * `recv.name` inside function and method bodies, in `src/` TypeScript files (no declarations, no tests) that have no
 * syntactic or semantic diagnostics in the package's workspace, so that a completed file's new diagnostics can only
 * come from the completion.
 *
 * Sampling is deterministic for a seed and spread across files: files are shuffled, then one site is taken from each
 * file in turn (round robin) until the limit, so a big file cannot fill the set. Files are type-checked only when the
 * round robin first reaches them, which keeps a small sample of a big package cheap.
 */
import path from 'node:path';
import ts from 'typescript';
import { BadInputError } from '../errors.js';
import { ensureWorkspace, isSourceFile, type PackageSpec, type Workspace } from './packages.js';
import type { DotTask, Tag } from './tasks.js';

export interface MakeDotsOptions {
  packages: PackageSpec[];
  /** Tasks per package; default: every site. */
  limit?: number;
  seed?: number;
  log?: (line: string) => void;
}

export interface PackageSites {
  package: string;
  /** Source files in the package, those the sampler type-checked (visited), and those that type-check. */
  files: number;
  checkedFiles: number;
  cleanFiles: number;
  tasks: number;
}

export async function makeDots(opts: MakeDotsOptions): Promise<{ tasks: DotTask[]; packages: PackageSites[] }> {
  const tasks: DotTask[] = [];
  const packages: PackageSites[] = [];
  for (const spec of opts.packages) {
    const ws = await ensureWorkspace(spec, opts.log);
    const picked = pickSites(ws, opts.limit ?? Infinity, opts.seed ?? 0);
    opts.log?.(`eval: ${ws.name}@${ws.version}: ${picked.tasks.length} sites; ${picked.cleanFiles} of ${picked.checkedFiles} files checked type-check (${picked.files} source files)`);
    tasks.push(...picked.tasks);
    packages.push({ package: `${ws.name}@${ws.version}`, files: picked.files, checkedFiles: picked.checkedFiles, cleanFiles: picked.cleanFiles, tasks: picked.tasks.length });
  }
  return { tasks, packages };
}

/** The program of a workspace under its tsconfig.json (ours, see packages.ts). */
export function workspaceProgram(dir: string): ts.Program {
  const configFile = path.join(dir, 'tsconfig.json');
  const parsed = ts.getParsedCommandLineOfConfigFile(configFile, {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: (d) => {
    throw new BadInputError(`${configFile}: ${ts.flattenDiagnosticMessageText(d.messageText, ' ')}`);
  } });
  if (!parsed) throw new BadInputError(`cannot read ${configFile}`);
  return ts.createProgram({ rootNames: parsed.fileNames, options: parsed.options });
}

function pickSites(ws: Workspace, limit: number, seed: number): { tasks: DotTask[]; files: number; checkedFiles: number; cleanFiles: number } {
  const program = workspaceProgram(ws.dir);
  const checker = program.getTypeChecker();
  const rel = (f: string) => path.relative(ws.dir, f).split(path.sep).join('/');
  const files = program
    .getSourceFiles()
    .filter((sf) => !sf.isDeclarationFile && !rel(sf.fileName).startsWith('..') && isSourceFile(rel(sf.fileName)))
    .sort((a, b) => (a.fileName < b.fileName ? -1 : 1));
  if (!files.length) throw new BadInputError(`${ws.name}@${ws.version}: no TypeScript sources under src/ in its program`);
  const random = mulberry32(seed);
  const queue = shuffle(files, random).map((sf) => ({ sf, sites: null as ts.PropertyAccessExpression[] | null }));
  let cleanFiles = 0;
  let checkedFiles = 0;
  const chosen: DotTask[] = [];
  // Round robin over the shuffled files; a file's sites are collected (and the file type-checked) on first visit.
  while (chosen.length < limit && queue.length) {
    for (let i = 0; i < queue.length && chosen.length < limit; ) {
      const entry = queue[i]!;
      if (!entry.sites) {
        const diagnostics = [...program.getSyntacticDiagnostics(entry.sf), ...program.getSemanticDiagnostics(entry.sf)];
        checkedFiles++;
        entry.sites = diagnostics.length ? [] : shuffle(candidateSites(entry.sf), random);
        if (!diagnostics.length) cleanFiles++;
      }
      let task: DotTask | null = null;
      while (!task && entry.sites.length) task = siteTask(entry.sites.pop()!, entry.sf, program, checker, ws, rel(entry.sf.fileName));
      if (task) chosen.push(task);
      if (entry.sites.length) i++;
      else queue.splice(i, 1);
    }
  }
  chosen.sort((a, b) => (a.file !== b.file ? (a.file < b.file ? -1 : 1) : a.line - b.line || a.character - b.character));
  return { tasks: chosen, files: files.length, checkedFiles, cleanFiles };
}

/** Member accesses inside function bodies whose `.` (or `?.`) touches the name, in source order. */
function candidateSites(sf: ts.SourceFile): ts.PropertyAccessExpression[] {
  const sites: ts.PropertyAccessExpression[] = [];
  const visit = (node: ts.Node, inBody: boolean): void => {
    if (inBody && ts.isPropertyAccessExpression(node) && ts.isIdentifier(node.name)) {
      const at = node.name.getStart(sf);
      if (sf.text[at - 1] === '.') sites.push(node);
    }
    const body = ts.isFunctionLike(node) && 'body' in node && node.body ? (node.body as ts.Node) : null;
    ts.forEachChild(node, (child) => visit(child, inBody || child === body));
  };
  visit(sf, false);
  return sites;
}

/** The task for one site, or null when the checker cannot say what the member is (nothing to judge it by). */
function siteTask(node: ts.PropertyAccessExpression, sf: ts.SourceFile, program: ts.Program, checker: ts.TypeChecker, ws: Workspace, file: string): DotTask | null {
  const symbol = checker.getSymbolAtLocation(node.name);
  const decl = symbol?.declarations?.[0];
  if (!symbol || !decl) return null;
  const offset = node.name.getStart(sf);
  const { line, character } = sf.getLineAndCharacterOfPosition(offset);
  const lineEnd = sf.getLineEndOfPosition(offset);
  const truth = sf.text.slice(offset, lineEnd).replace(/\r$/, '');
  const tags: Tag[] = [];
  const declFile = decl.getSourceFile();
  if (program.isSourceFileDefaultLibrary(declFile)) tags.push('lib');
  else if (declFile.fileName.split(/[\\/]/).includes('node_modules')) tags.push('npm-package');
  else if (declFile === sf) tags.push('same-file');
  else tags.push('cross-file');
  if (isGeneric(node, symbol, decl, checker)) tags.push('generic');
  if (node.expression.kind === ts.SyntaxKind.ThisKeyword) tags.push('this-member');
  if (node.questionDotToken) tags.push('optional-chaining');
  tags.push(ts.isCallExpression(node.parent) && node.parent.expression === node ? 'call' : 'property');
  return { package: `${ws.name}@${ws.version}`, file, line, character, truth, receiver: node.expression.getText(sf), tags };
}

/** The receiver's type is an instantiation of a generic type, or the member itself has type parameters. */
function isGeneric(node: ts.PropertyAccessExpression, symbol: ts.Symbol, decl: ts.Declaration, checker: ts.TypeChecker): boolean {
  let recv = checker.getTypeAtLocation(node.expression);
  if (recv.isTypeParameter()) recv = checker.getBaseConstraintOfType(recv) ?? recv; // `this` in a class
  if (recv.aliasTypeArguments?.length) return true;
  if (recv.flags & ts.TypeFlags.Object && (recv as ts.ObjectType).objectFlags & ts.ObjectFlags.Reference && checker.getTypeArguments(recv as ts.TypeReference).length) return true;
  if (ts.isFunctionLike(decl) && decl.typeParameters?.length) return true;
  const memberType = checker.getTypeOfSymbolAtLocation(symbol, node);
  return memberType.getCallSignatures().some((s) => !!s.getTypeParameters()?.length);
}

/** A small seeded PRNG (mulberry32): the same seed picks the same sites on every machine. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function shuffle<T>(items: T[], random: () => number): T[] {
  const a = [...items];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}
