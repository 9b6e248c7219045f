/**
 * What monitors ask static analysis, whatever answers: the in-process TypeScript service (ts-oracle.ts) or a
 * language server over LSP (lsp-oracle.ts). Questions are about a *shadow* document: the file's text before the
 * cursor + what the model generated + the text after the cursor, never written to disk.
 *
 * Every answer may be null, meaning "no opinion" (not a member access, an unknown type, an incomplete list): a
 * monitor then constrains nothing. An oracle never answers "nothing is legal". A failure (crash, timeout) is thrown
 * and the monitor counts it and decodes on unmonitored.
 */
export type Awaitable<T> = T | Promise<T>;

/** The argument counts a call accepts, over its overloads. */
export interface CallShape {
  /** Fewest arguments any overload accepts. */
  minArgs: number;
  /** Most arguments any overload accepts (Infinity with a rest parameter). */
  maxArgs: number;
}

export interface TypeLocation {
  file: string;
  line: number;
}

/**
 * A file of a dependency or of the language's own library (node_modules, typeshed, site-packages): its types are the
 * model's to know, not the repository's, so retrieval leaves them out.
 */
export function isLibraryFile(abs: string): boolean {
  return /[/\\](node_modules|typeshed|typeshed-fallback|site-packages)[/\\]/.test(abs);
}

export interface TypeOracle {
  /** For logs and JSON: `typescript`, `lsp:pyright`... */
  readonly name: string;
  /** Members legal right after the `.` that ends just before `offset`, or null. */
  members(file: string, text: string, offset: number): Awaitable<string[] | null>;
  /** The call whose `(` ends just before `offset`: what argument counts it accepts, or null. */
  callShape(file: string, text: string, offset: number): Awaitable<CallShape | null>;
  /**
   * Where the type of the expression ending just before `offset` is defined (absolute file, 0-based line), or null:
   * the receiver of `acc.` when its type is inferred and its name appears nowhere near the cursor. Optional.
   */
  typeDefinitions?(file: string, text: string, offset: number): Awaitable<TypeLocation[] | null>;
  /** The errors the checker reports for the whole shadow document (for the verifier), or null. Optional. */
  errors?(file: string, text: string): Awaitable<CheckDiagnostic[] | null>;
  dispose(): Awaitable<void>;
}

/** An error as the verifier compares them: the checker's code and its message (position left out). */
export interface CheckDiagnostic {
  code: number;
  message: string;
}

/** Argument counts over signatures given as their parameters' labels (LSP signatureHelp), by each language's spelling. */
export function shapeOfSignatures(signatures: { parameters: string[]; variadic?: boolean }[]): CallShape | null {
  if (signatures.length === 0) return null;
  let minArgs = Infinity;
  let maxArgs = 0;
  for (const s of signatures) {
    let required = 0;
    let count = 0;
    let rest = !!s.variadic;
    for (const raw of s.parameters) {
      // judge the parameter by its top level: `replacer: (s: string, ...args: any[]) => string` is not a rest parameter
      const p = topLevel(raw.trim());
      // Python's markers for positional-only (`/`) and keyword-only (`*`) parameters are not parameters
      if (p === '/' || p === '*') continue;
      // rest parameters: `...args` (TS/JS), `*args`/`**kwargs` (Python), `args ...T` (Go), `T... args` (Java)
      if (/^(\.\.\.|…|\*)/.test(p) || /^[\p{L}_][\p{L}\p{N}_]*\s+\.\.\./u.test(p) || /\.\.\.\s+[\p{L}_][\p{L}\p{N}_]*$/u.test(p)) {
        rest = true;
        continue;
      }
      count++;
      // optional: a default (`x=1`, `x: int = 1`), or TypeScript's `x?`
      if (p.includes('=') || /^[\p{L}_$][\p{L}\p{N}_$]*\?/u.test(p)) continue;
      required++;
    }
    minArgs = Math.min(minArgs, required);
    maxArgs = Math.max(maxArgs, rest ? Infinity : count);
  }
  return { minArgs, maxArgs };
}

/** A parameter label without what is nested in brackets (types, defaults' calls), arrows and comparisons removed. */
function topLevel(label: string): string {
  let out = '';
  let depth = 0;
  const text = label.replace(/=>|==|!=|<=|>=/g, ' ');
  for (const c of text) {
    if ('([{<'.includes(c)) depth++;
    else if (')]}>'.includes(c)) depth = Math.max(0, depth - 1);
    else if (depth === 0) out += c;
  }
  return out.trim();
}
