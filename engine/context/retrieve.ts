/**
 * Repository context for a completion: what the model should see of other files, as `{path, text}` blocks for the
 * prompt (engine/decode/fim.ts formats them as `<|file_sep|>path` blocks or comments and packs them under a budget).
 *
 * Sources, in the order they are placed (stable first, so consecutive prompts share the longest token prefix and the
 * KV cache serves it):
 *   1. outlines of the modules the file imports (exported signatures, not whole files), by import order;
 *   2. definitions of the names used near the cursor that live in other files (types, functions, classes), the most
 *      used first, grouped per file in path order; first among them the receiver's type where a type oracle located
 *      it (`book.` with `book` inferred from a call: its class's name appears nowhere near the cursor);
 *   3. the file's own outline, when the file is long enough that the prompt's prefix is cut;
 *   4. similar code from recently edited files (Jaccard similarity of identifier sets with the lines before the
 *      cursor), the most volatile part, last.
 * Retrieval is by name through the index, plus what the engine asked the type oracle (one question, the receiver's
 * type definition, and only at a member access: the oracle is busy with the monitors).
 */
import type { RepoIndex } from './repo-index.js';
import type { Definition } from './symbols.js';

export interface ContextBlock {
  path: string;
  text: string;
  /** Which source chose it: for stats and tests. */
  source: 'import' | 'definition' | 'outline' | 'similar';
}

export interface RetrieveOptions {
  /** Lines before the cursor whose identifiers are looked up (default 40). */
  nearLines?: number;
  maxDefinitions?: number;
  maxSimilar?: number;
  /** A file longer than this (characters) gets its own outline (default 6,000). */
  longFile?: number;
  /** Where the type oracle says the receiver's type is defined (workspace-relative files, 0-based lines). */
  receiverTypes?: readonly { file: string; line: number }[];
}

const OUTLINE_CHARS = 1500;
const WINDOW_LINES = 12;
const KEYWORDS = new Set(
  'abstract as async await boolean break case catch class const constructor continue debugger declare default def delete do elif else enum except export extends false finally for from function get if implements import in instanceof interface is keyof let module namespace never new null number object of package private protected public readonly return self set static string super switch symbol this throw true try type typeof undefined unknown var void while with yield None True False pass lambda nonlocal global raise func fn impl pub struct trait use mut'.split(' '),
);

export function retrieveContext(index: RepoIndex, absPath: string, prefix: string, suffix: string, o: RetrieveOptions = {}): ContextBlock[] {
  const self = index.relative(absPath);
  if (self === null) return [];
  const blocks: ContextBlock[] = [];
  const included = new Set<string>([self]);

  // 1. imported modules' outlines
  const me = index.files.get(self);
  for (const spec of me?.symbols.imports ?? []) {
    const target = index.resolveImport(self, spec);
    if (!target || included.has(target)) continue;
    const text = outline(index, target, true);
    if (!text) continue;
    included.add(target);
    blocks.push({ path: target, text, source: 'import' });
  }

  // 2. definitions of names used near the cursor, from files not already shown
  const near = prefix.split('\n').slice(-(o.nearLines ?? 40)).join('\n');
  const counts = new Map<string, number>();
  for (const m of near.matchAll(/[A-Za-z_$][\w$]*/g)) {
    const name = m[0];
    if (name.length < 3 || KEYWORDS.has(name)) continue;
    counts.set(name, (counts.get(name) ?? 0) + 1);
  }
  const wanted = [...counts.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
  const byFile = new Map<string, string[]>();
  let defs = 0;
  const add = (file: string, signature: string) => {
    const list = byFile.get(file) ?? [];
    if (!list.includes(signature)) list.push(signature);
    byFile.set(file, list);
    defs++;
  };
  for (const at of o.receiverTypes ?? []) {
    if (at.file === self) continue;
    // the declaration the oracle's line falls in: the last one starting at or before it
    let def: Definition | undefined;
    for (const d of index.files.get(at.file)?.symbols.definitions ?? []) if (d.line <= at.line && (!def || d.line > def.line)) def = d;
    if (!def) continue;
    const shown = blocks.find((b) => b.path === at.file);
    if (shown?.text.includes(def.signature)) continue; // already in full in the imported module's outline
    add(at.file, def.signature);
  }
  for (const [name] of wanted) {
    if (defs >= (o.maxDefinitions ?? 8)) break;
    const found = index.definitions(name).filter((d) => !included.has(d.file));
    // an ambiguous name defined in many places says little: take it only from a few
    for (const { file, def } of found.slice(0, 2)) add(file, def.signature);
  }
  for (const file of [...byFile.keys()].sort()) blocks.push({ path: file, text: byFile.get(file)!.join('\n\n'), source: 'definition' });

  // 3. the file's own outline when the prompt will not show all of it
  if (prefix.length + suffix.length > (o.longFile ?? 6000)) {
    const text = outline(index, self, false);
    if (text) blocks.push({ path: self, text, source: 'outline' });
  }

  // 4. similar code from recently edited files
  const query = identifierSet(prefix.split('\n').slice(-WINDOW_LINES).join('\n'));
  if (query.size >= 3) {
    const scored: { path: string; text: string; score: number }[] = [];
    for (const [file, text] of index.recent) {
      if (file === self) continue;
      const lines = text.split('\n');
      for (let at = 0; at < lines.length; at += WINDOW_LINES / 2) {
        const window = lines.slice(at, at + WINDOW_LINES).join('\n');
        const score = jaccard(query, identifierSet(window));
        if (score >= 0.2) scored.push({ path: file, text: window, score });
      }
    }
    scored.sort((a, b) => b.score - a.score);
    for (const s of scored.slice(0, o.maxSimilar ?? 2)) blocks.push({ path: s.path, text: s.text, source: 'similar' });
  }
  return blocks;
}

/** A file's definitions' signatures (exported only, for another file's view of it), clipped. */
function outline(index: RepoIndex, file: string, exportedOnly: boolean): string {
  const defs = index.files.get(file)?.symbols.definitions ?? [];
  let text = '';
  for (const d of defs) {
    if (exportedOnly && !d.exported) continue;
    if (text.length + d.signature.length > OUTLINE_CHARS) break;
    text += (text ? '\n\n' : '') + d.signature;
  }
  return text;
}

function identifierSet(text: string): Set<string> {
  const s = new Set<string>();
  for (const m of text.matchAll(/[A-Za-z_$][\w$]*/g)) if (m[0].length > 1 && !KEYWORDS.has(m[0])) s.add(m[0]);
  return s;
}

function jaccard(a: Set<string>, b: Set<string>): number {
  if (!a.size || !b.size) return 0;
  let both = 0;
  for (const x of a) if (b.has(x)) both++;
  return both / (a.size + b.size - both);
}
