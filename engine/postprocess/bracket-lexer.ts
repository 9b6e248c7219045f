/**
 * A small lexer for brackets, quotes and comments, per language (chosen by file extension): enough to know which
 * brackets are open at a point of a document, which of them the text after the point closes, and whether a string
 * or comment is open there. Brackets inside strings and comments do not count; `<`/`>` are never brackets.
 * Post-processing (balance-brackets.ts) and the bracket discipline monitor (engine/monitors/bracket-discipline.ts)
 * read the document through it, so the decode loop and the text shown agree on what is open.
 */

export interface QuoteSpec {
  open: string;
  close: string;
  /** Runs over line ends (template literals, triple quotes, Go raw strings). */
  multiline: boolean;
  escapes: boolean;
  /** `${ }` substitutions (JavaScript templates). */
  interp: boolean;
}

export interface Syntax {
  line: string[];
  block: [string, string] | null;
  quotes: QuoteSpec[];
  /** Rust: `'a'` is a character, `'a` a lifetime. */
  rustQuotes: boolean;
  /** Words that may prefix a string literal (Python's f'', C++'s u8''); elsewhere `word'` is an apostrophe. */
  stringPrefix: RegExp | null;
  /** JavaScript: `/.../` in expression position is a regular expression literal (its brackets are not brackets). */
  regex?: boolean;
}

const q = (open: string, multiline = false, interp = false, escapes = true): QuoteSpec => ({ open, close: open, multiline, escapes, interp });
const C_QUOTES = [q('"'), q("'")];

/** The lexing rules for a file, by extension; unknown extensions get C-like comments and quotes. */
export function syntaxFor(filePath: string | undefined): Syntax {
  return knownSyntax(filePath) ?? { ...C_LIKE, quotes: C_QUOTES };
}

const C_LIKE = { line: ['//'], block: ['/*', '*/'] as [string, string], rustQuotes: false, stringPrefix: null };

/** The lexing rules of a language this lexer knows, or null (prose, data, a language it would misread). */
export function knownSyntax(filePath: string | undefined): Syntax | null {
  const ext = /\.([A-Za-z0-9]+)$/.exec(filePath ?? '')?.[1]?.toLowerCase() ?? '';
  if (['ts', 'tsx', 'mts', 'cts', 'js', 'jsx', 'mjs', 'cjs'].includes(ext)) return { ...C_LIKE, quotes: [...C_QUOTES, q('`', true, true)], regex: true };
  if (ext === 'go') return { ...C_LIKE, quotes: [...C_QUOTES, q('`', true, false, false)] };
  if (ext === 'rs') return { ...C_LIKE, quotes: [q('"', true)], rustQuotes: true };
  if (['py', 'pyi'].includes(ext)) return { line: ['#'], block: null, quotes: [q('"""', true), q("'''", true), ...C_QUOTES], rustQuotes: false, stringPrefix: /(?:^|\W)[rbfu]{1,2}$/i };
  if (['rb', 'sh', 'bash', 'zsh', 'pl', 'r', 'yaml', 'yml', 'toml'].includes(ext)) return { line: ['#'], block: null, quotes: C_QUOTES, rustQuotes: false, stringPrefix: null };
  if (['c', 'h', 'cc', 'cpp', 'cxx', 'hpp', 'hh', 'hxx'].includes(ext)) return { ...C_LIKE, quotes: C_QUOTES, stringPrefix: /(?:^|\W)(?:u8|u|U|L)$/ };
  if (['java', 'cs', 'kt', 'kts', 'scala', 'swift', 'dart', 'php'].includes(ext)) return { ...C_LIKE, quotes: C_QUOTES };
  return null;
}

/** Something open: a bracket, a string literal, or a `${` substitution in a template. */
export interface Open {
  close: string;
  quote: QuoteSpec | null;
  interp: boolean;
  from: 'prefix' | 'completion' | 'suffix';
  /** Where it opened, in the completion (completion entries). */
  at: number;
  /** Prefix entries: the suffix closes it, at this index of the suffix (-1: it does not). */
  closedAt: number;
}

export interface LexState {
  stack: Open[];
  comment: 'line' | 'block' | null;
}

export type LexEvent =
  | { type: 'open'; at: number; entry: Open }
  /** A closer; `match` is the stack index it closes (the consumer pops), -1 if nothing open matches it. */
  | { type: 'close'; at: number; close: string; match: number }
  /** A single-line string still open at its line's end (popped by the lexer). */
  | { type: 'unterminated'; at: number; entry: Open }
  | { type: 'newline'; at: number }
  | { type: 'comment'; at: number };

const PAIRS: Record<string, string> = { '(': ')', '[': ']', '{': '}' };

/**
 * Walks `text` from `st` (which it updates), yielding brackets, string and comment boundaries. Closers are reported,
 * not popped: the consumer decides (a prefix trusts the completion, a completion is cut at a stray closer).
 * `before` is the text just before `text`, for look-behind.
 */
export function* lex(text: string, st: LexState, syn: Syntax, before: string, from: Open['from'] = 'prefix'): Generator<LexEvent> {
  const entry = (close: string, quote: QuoteSpec | null, interp: boolean, at: number): Open => ({ close, quote, interp, from, at, closedAt: -1 });
  let i = 0;
  outer: while (i < text.length) {
    const c = text[i]!;
    const top = st.stack.at(-1);
    if (c === '\n') {
      if (st.comment === 'line') st.comment = null;
      if (st.comment === null && top?.quote && !top.quote.multiline) {
        st.stack.pop();
        yield { type: 'unterminated', at: i, entry: top };
      }
      yield { type: 'newline', at: i };
      i++;
      continue;
    }
    if (st.comment === 'line') {
      i++;
      continue;
    }
    if (st.comment === 'block') {
      if (text.startsWith(syn.block![1], i)) {
        st.comment = null;
        i += syn.block![1].length;
      } else i++;
      continue;
    }
    if (top?.quote) {
      const qs = top.quote;
      if (qs.escapes && c === '\\') i += 2;
      else if (text.startsWith(qs.close, i)) {
        yield { type: 'close', at: i, close: qs.close, match: st.stack.length - 1 };
        i += qs.close.length;
      } else if (qs.interp && text.startsWith('${', i)) {
        const e = entry('}', null, true, i);
        st.stack.push(e);
        yield { type: 'open', at: i, entry: e };
        i += 2;
      } else i++;
      continue;
    }
    for (const lc of syn.line) {
      if (text.startsWith(lc, i)) {
        st.comment = 'line';
        yield { type: 'comment', at: i };
        i += lc.length;
        continue outer;
      }
    }
    if (syn.block && text.startsWith(syn.block[0], i)) {
      st.comment = 'block';
      yield { type: 'comment', at: i };
      i += syn.block[0].length;
      continue;
    }
    if (syn.rustQuotes && c === "'") {
      // a character literal is skipped whole; a lifetime is just a tick
      const m = /^'(?:\\(?:x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]{1,6}\}|.)|[^\\'\n])'/.exec(text.slice(i, i + 12));
      i += m ? m[0].length : 1;
      continue;
    }
    for (const qs of syn.quotes) {
      if (!text.startsWith(qs.open, i)) continue;
      // a single quote right after a word is an apostrophe (`don't` in JSX text), unless the word is a string
      // prefix (Python's f'', C++'s u8'')
      const behind = (before + text.slice(0, i)).slice(-3);
      if (qs.open === "'" && /[A-Za-z0-9_]$/.test(behind) && !syn.stringPrefix?.test(behind)) break;
      const e = entry(qs.close, qs, false, i);
      st.stack.push(e);
      yield { type: 'open', at: i, entry: e };
      i += qs.open.length;
      continue outer;
    }
    if (c === '/' && syn.regex) {
      const end = regexEnd(text, i, before);
      if (end > 0) {
        i = end;
        continue;
      }
    }
    if (PAIRS[c]) {
      const e = entry(PAIRS[c]!, null, false, i);
      st.stack.push(e);
      yield { type: 'open', at: i, entry: e };
    } else if (c === ')' || c === ']' || c === '}') {
      yield { type: 'close', at: i, close: c, match: findMatch(st.stack, c) };
    }
    i++;
  }
}

/** After these (or at the start), a `/` begins a regular expression; after a name, a number, `)` or `]` it divides. */
const REGEX_AFTER = /(?:^|[(,=:[!&|?{};+\-*%<>~^]|\b(?:return|typeof|case|do|else|in|of|void|yield|await|throw|new|delete))\s*$/;

/**
 * The end (exclusive, flags included) of the regular expression literal whose `/` is at `i`, or -1 when it is
 * division there or does not end on its line (then it is read as division, which costs nothing: no brackets).
 */
function regexEnd(text: string, i: number, before: string): number {
  const behind = (i >= 40 ? text.slice(i - 40, i) : before + text.slice(0, i)).slice(-40);
  if (!REGEX_AFTER.test(behind)) return -1;
  let inClass = false;
  for (let j = i + 1; j < text.length; j++) {
    const c = text[j]!;
    if (c === '\n') return -1;
    if (c === '\\') j++;
    else if (c === '[') inClass = true;
    else if (c === ']') inClass = false;
    else if (c === '/' && !inClass) {
      if (j === i + 1) return -1; // `//` is a comment (handled before), never an empty regex
      let k = j + 1;
      while (k < text.length && /[a-z]/.test(text[k]!)) k++;
      return k;
    }
  }
  return -1;
}

/** The topmost open bracket `close` closes, not looking past a string or substitution boundary; -1 if none. */
export function findMatch(stack: Open[], close: string): number {
  for (let j = stack.length - 1; j >= 0; j--) {
    const e = stack[j]!;
    if (e.close === close && !e.quote) return j;
    if (e.quote || e.interp) return -1;
  }
  return -1;
}

/** How far each side of the cursor is read: brackets open further back are the file's outer scopes. */
const PREFIX_WINDOW = 50_000;
const SUFFIX_WINDOW = 20_000;

/** The part of the prefix (from a line start) and of the suffix that is lexed around the cursor. */
export function cursorWindow(prefix: string, suffix = ''): { prefix: string; suffix: string } {
  const from = prefix.length <= PREFIX_WINDOW ? 0 : prefix.lastIndexOf('\n', prefix.length - PREFIX_WINDOW) + 1;
  return { prefix: prefix.slice(from), suffix: suffix.slice(0, SUFFIX_WINDOW) };
}

/** The state at the end of `prefix`: its open brackets, and the string or comment it ends in. */
export function lexPrefix(prefix: string, syn: Syntax): LexState {
  const st: LexState = { stack: [], comment: null };
  for (const ev of lex(prefix, st, syn, '')) {
    if (ev.type === 'close' && ev.match >= 0) st.stack.length = ev.match;
  }
  return st;
}

/**
 * Whether the end of `prefix` is in code: not in a comment, a string or a template's text (inside a template's `${ }`
 * is code). What comes before a point decides this, so unlike a parse of the whole document it cannot be misled
 * by what follows (a template left open on the cursor's line, closed by the next line's backtick).
 */
export function endsInCode(prefix: string, syn: Syntax): boolean {
  const st = lexPrefix(cursorWindow(prefix).prefix, syn);
  return st.comment === null && (st.stack.at(-1)?.quote ?? null) === null;
}

export function copy(st: LexState): LexState {
  return { stack: [...st.stack], comment: st.comment };
}

/**
 * Reads the suffix from the prefix's state: marks each prefix bracket the suffix closes (closedAt), and returns the
 * suffix's free closers (closing nothing open) that come before its first closer of a prefix bracket.
 */
export function scanSuffix(suffix: string, start: LexState, syn: Syntax, before: string): string[] {
  const st = copy(start);
  for (const e of start.stack) e.closedAt = -1;
  const free: string[] = [];
  let owned = false;
  for (const ev of lex(suffix, st, syn, before, 'suffix')) {
    if (ev.type === 'unterminated' && ev.entry.from === 'suffix' && !owned) free.push(ev.entry.close); // a lone quote
    if (ev.type !== 'close') continue;
    if (ev.match < 0) {
      if (!owned) free.push(ev.close);
      continue;
    }
    const e = st.stack[ev.match]!;
    if (e.from === 'prefix') {
      e.closedAt = ev.at;
      owned = true;
    }
    st.stack.length = ev.match;
    if (!st.stack.some((x) => x.from === 'prefix')) break;
  }
  return free;
}
