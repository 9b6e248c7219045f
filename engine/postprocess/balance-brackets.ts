/**
 * Balances the brackets and quotes a completion opened, so that accepting it never leaves the document less balanced
 * than it was. The document is read as three pieces: the prefix (its open brackets are the starting stack), the
 * completion, and the suffix (which of the prefix's brackets it closes, and whether it has closers of its own that
 * close nothing).
 *
 * The rules, in order:
 *  1. A closer in the completion that matches nothing open, or the wrong bracket of its own, breaks the structure:
 *     the completion is cut before it (and counts as cut short, below). So is a one-line string left open across a
 *     line end, and a comment left open where it would swallow the rest of the line.
 *  2. The completion closes a bracket (or string) of the prefix that the suffix closes too (the editor's
 *     auto-inserted `)` after the cursor, `"` of an auto-closed string): if those closers start the cursor's line
 *     rest and the rest after them is blank or what the completion ends with, the completion *replaces* them
 *     (`console.log(|)` + `x);` is `console.log(x);`); otherwise it is cut before its closer (`foo(|, b)` + `a), c`
 *     is `a`).
 *  3. Brackets the completion leaves open are closed by closers the suffix has that close nothing today (the user
 *     deleted an opener): nothing to do. Otherwise:
 *     - a completion that ended on its own (end of line or block, end of sequence) gets the closers appended,
 *       innermost first: inline (`foo(a` -> `foo(a)`, before a trailing `;`) or, for a bracket that ended its line,
 *       on a line of its own at its line's indentation;
 *     - a completion cut by the token limit is cut back instead: to the last line end where only such block
 *       brackets are open (which are then closed on lines of their own), else before its first unclosed opener.
 * Strings, comments and template literals are lexed per language (by file extension), so brackets inside them do
 * not count; `<`/`>` are never brackets.
 */

export interface BalanceContext {
  /** The document before the cursor. */
  prefix: string;
  /** The document after the cursor. */
  suffix: string;
  /** The file, whose extension selects the language's comments and strings. */
  filePath?: string;
  /** The completion ended on its own (end of line or block, end of sequence, stop string), not at the token limit. */
  finished: boolean;
  /** Whether the answer may replace closers after the cursor (rule 2); without it, overruns are cut. Default true. */
  replace?: boolean;
}

export interface Balanced {
  text: string;
  /** Characters after the cursor, on its line, that the text replaces (0: a plain insertion). */
  replace: number;
}

/** How far each side of the cursor is read. */
const PREFIX_WINDOW = 50_000;
const SUFFIX_WINDOW = 20_000;

export function balanceBrackets(text: string, ctx: BalanceContext): Balanced {
  const syn = syntaxFor(ctx.filePath);
  const prefixFrom = ctx.prefix.length <= PREFIX_WINDOW ? 0 : ctx.prefix.lastIndexOf('\n', ctx.prefix.length - PREFIX_WINDOW) + 1;
  const prefix = ctx.prefix.slice(prefixFrom);
  const suffix = ctx.suffix.slice(0, SUFFIX_WINDOW);
  const lineRest = suffix.slice(0, suffix.indexOf('\n') < 0 ? suffix.length : suffix.indexOf('\n'));
  const linePrefix = prefix.slice(prefix.lastIndexOf('\n') + 1);
  const eol = /\r\n/.test(ctx.prefix.slice(-2000) + suffix.slice(0, 2000)) ? '\r\n' : '\n';

  // the prefix: its open brackets (and the string or comment the cursor is in) start both other scans
  const start: LexState = { stack: [], comment: null };
  for (const ev of lex(prefix, start, syn, '')) {
    if (ev.type === 'close' && ev.match >= 0) start.stack.length = ev.match;
  }
  const free = scanSuffix(suffix, start, syn, prefix.slice(-8));

  let scan = scanCompletion(text, start, syn, prefix.slice(-8));
  let finished = ctx.finished;
  if (scan.broken !== null) {
    // rule 1: a closer that breaks the structure; what the model wrote from there on is not used
    text = text.slice(0, scan.broken).trimEnd();
    scan = scanCompletion(text, start, syn, prefix.slice(-8));
    finished = false;
  }
  if (scan.commentAt !== null && (scan.end.comment === 'block' || lineRest.trim() !== '')) {
    // a comment the completion leaves open would swallow the rest of the line (or of the file)
    text = text.slice(0, scan.commentAt).trimEnd();
    scan = scanCompletion(text, start, syn, prefix.slice(-8));
  }

  // rule 2: the completion closes what the suffix closes
  let replace = 0;
  if (scan.overruns.length > 0) {
    const r = ctx.replace === false ? null : replaceable(text, scan.overruns, lineRest);
    if (r === null) return { text: text.slice(0, scan.overruns[0]!.at).trimEnd(), replace: 0 };
    replace = r;
  }

  // rule 3: what the completion leaves open
  const open = scan.end.stack.filter((e) => e.from === 'completion');
  if (open.length === 0) return { text, replace };
  const needed = open.map((e) => e.close).reverse();
  if (needed.every((c, i) => free[i] === c)) return { text, replace };
  const lines = { text, linePrefix, syn, eol };
  // a block opened at the end of the line whose body is already below (the next line is indented deeper): neither
  // it nor what encloses it on this line (`forEach((x) => {`) is closed here: the lines below go on inside them
  if (isBlock(open[open.length - 1]!, lines) && bodyBelow(linePrefix + text, suffix)) return { text, replace };
  if (finished && scan.end.comment === null) return { text: closeAll(text, open, lines), replace };
  if (finished && scan.commentAt !== null) {
    // ended in a comment: the closers cannot go after it on its line; the comment goes
    return balanceBrackets(text.slice(0, scan.commentAt).trimEnd(), ctx);
  }
  // cut by the token limit: back to the last line end where only block brackets are open
  for (let k = scan.lineEnds.length - 1; k >= 0; k--) {
    const { at, open: openThere } = scan.lineEnds[k]!;
    if (text.slice(0, at).trim() === '') break;
    if (openThere.every((e) => isBlock(e, lines))) {
      // a replacement stands only if the closers that make it are kept
      if (scan.overruns.some((o) => o.at >= at)) return { text: text.slice(0, Math.min(at, scan.overruns[0]!.at)).trimEnd(), replace: 0 };
      const kept = text.slice(0, at).trimEnd();
      return { text: openThere.length ? closeAll(kept, openThere, lines) : kept, replace };
    }
  }
  // else before the first opener left open (any closer of a prefix bracket, which a replacement needs, comes before it)
  return { text: text.slice(0, open[0]!.at).trimEnd(), replace };
}

/** Whether the suffix's first non-blank line after the cursor's is indented deeper than the last line of `line`. */
function bodyBelow(line: string, suffix: string): boolean {
  const nl = suffix.indexOf('\n');
  if (nl < 0 || suffix.slice(0, nl).trim() !== '') return false;
  const next = suffix
    .slice(nl + 1)
    .split('\n')
    .find((l) => l.trim() !== '');
  if (next === undefined) return false;
  const indent = (l: string) => /^[ \t]*/.exec(l)![0].replace(/\t/g, '    ').length;
  return indent(next) > indent(line.slice(line.lastIndexOf('\n') + 1));
}

/**
 * The closers, innermost first, of what is still open at the end of `text` and was opened on the cursor's line, by
 * the completion or by the prefix (`${`, a string, a bracket), whatever the suffix does: the repair the verifier
 * tries when a suggestion leaves its line unfinished (`${issue.minimum` -> `}` and the template's backtick).
 */
export function lineClosers(text: string, ctx: Pick<BalanceContext, 'prefix' | 'filePath'>): string {
  const syn = syntaxFor(ctx.filePath);
  const prefixFrom = ctx.prefix.length <= PREFIX_WINDOW ? 0 : ctx.prefix.lastIndexOf('\n', ctx.prefix.length - PREFIX_WINDOW) + 1;
  const prefix = ctx.prefix.slice(prefixFrom);
  const lineStart = prefix.lastIndexOf('\n') + 1;
  const start: LexState = { stack: [], comment: null };
  for (const ev of lex(prefix, start, syn, '')) {
    if (ev.type === 'close' && ev.match >= 0) start.stack.length = ev.match;
  }
  const st = copy(start);
  for (const ev of lex(text, st, syn, prefix.slice(-8), 'completion')) {
    if (ev.type === 'close' && ev.match >= 0) st.stack.length = ev.match;
  }
  if (st.comment !== null) return '';
  let closers = '';
  for (let i = st.stack.length - 1; i >= 0; i--) {
    const e = st.stack[i]!;
    if (e.from === 'prefix' && e.at < lineStart) break;
    closers += e.close;
  }
  return closers;
}

// --- the lexer ---------------------------------------------------------------------------------------------------

interface QuoteSpec {
  open: string;
  close: string;
  /** Runs over line ends (template literals, triple quotes, Go raw strings). */
  multiline: boolean;
  escapes: boolean;
  /** `${ }` substitutions (JavaScript templates). */
  interp: boolean;
}

interface Syntax {
  line: string[];
  block: [string, string] | null;
  quotes: QuoteSpec[];
  /** Rust: `'a'` is a character, `'a` a lifetime. */
  rustQuotes: boolean;
  /** Words that may prefix a string literal (Python's f'', C++'s u8''); elsewhere `word'` is an apostrophe. */
  stringPrefix: RegExp | null;
}

const q = (open: string, multiline = false, interp = false, escapes = true): QuoteSpec => ({ open, close: open, multiline, escapes, interp });
const C_QUOTES = [q('"'), q("'")];

function syntaxFor(filePath: string | undefined): Syntax {
  const ext = /\.([A-Za-z0-9]+)$/.exec(filePath ?? '')?.[1]?.toLowerCase() ?? '';
  const cLike = { line: ['//'], block: ['/*', '*/'] as [string, string], rustQuotes: false, stringPrefix: null };
  if (['ts', 'tsx', 'mts', 'cts', 'js', 'jsx', 'mjs', 'cjs'].includes(ext)) return { ...cLike, quotes: [...C_QUOTES, q('`', true, true)] };
  if (ext === 'go') return { ...cLike, quotes: [...C_QUOTES, q('`', true, false, false)] };
  if (ext === 'rs') return { ...cLike, quotes: [q('"', true)], rustQuotes: true };
  if (['py', 'pyi'].includes(ext)) return { line: ['#'], block: null, quotes: [q('"""', true), q("'''", true), ...C_QUOTES], rustQuotes: false, stringPrefix: /(?:^|\W)[rbfu]{1,2}$/i };
  if (['rb', 'sh', 'bash', 'zsh', 'pl', 'r', 'yaml', 'yml', 'toml'].includes(ext)) return { line: ['#'], block: null, quotes: C_QUOTES, rustQuotes: false, stringPrefix: null };
  if (['c', 'h', 'cc', 'cpp', 'cxx', 'hpp', 'hh', 'hxx'].includes(ext)) return { ...cLike, quotes: C_QUOTES, stringPrefix: /(?:^|\W)(?:u8|u|U|L)$/ };
  return { ...cLike, quotes: C_QUOTES };
}

/** Something open: a bracket, a string literal, or a `${` substitution in a template. */
interface Open {
  close: string;
  quote: QuoteSpec | null;
  interp: boolean;
  from: 'prefix' | 'completion' | 'suffix';
  /** Where it opened, in the completion (completion entries). */
  at: number;
  /** Prefix entries: the suffix closes it, at this index of the suffix (-1: it does not). */
  closedAt: number;
}

interface LexState {
  stack: Open[];
  comment: 'line' | 'block' | null;
}

type LexEvent =
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
function* lex(text: string, st: LexState, syn: Syntax, before: string, from: Open['from'] = 'prefix'): Generator<LexEvent> {
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

/** The topmost open bracket `close` closes, not looking past a string or substitution boundary; -1 if none. */
function findMatch(stack: Open[], close: string): number {
  for (let j = stack.length - 1; j >= 0; j--) {
    const e = stack[j]!;
    if (e.close === close && !e.quote) return j;
    if (e.quote || e.interp) return -1;
  }
  return -1;
}

function copy(st: LexState): LexState {
  return { stack: [...st.stack], comment: st.comment };
}

/**
 * Reads the suffix from the prefix's state: marks each prefix bracket the suffix closes (closedAt), and returns the
 * suffix's free closers (closing nothing open) that come before its first closer of a prefix bracket.
 */
function scanSuffix(suffix: string, start: LexState, syn: Syntax, before: string): string[] {
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

interface CompletionScan {
  end: LexState;
  /** Where a closer broke the structure (rule 1), or null. */
  broken: number | null;
  /** Closers of prefix brackets that the suffix closes too, in order (rule 2). */
  overruns: Array<{ at: number; entry: Open }>;
  /** Each line end of the completion, with the completion's brackets open there. */
  lineEnds: Array<{ at: number; open: Open[] }>;
  /** Where the comment the completion ends in began. */
  commentAt: number | null;
}

function scanCompletion(text: string, start: LexState, syn: Syntax, before: string): CompletionScan {
  const st = copy(start);
  const out: CompletionScan = { end: st, broken: null, overruns: [], lineEnds: [], commentAt: null };
  for (const ev of lex(text, st, syn, before, 'completion')) {
    if (ev.type === 'comment') out.commentAt = ev.at;
    else if (ev.type === 'newline') {
      out.lineEnds.push({ at: ev.at, open: st.stack.filter((e) => e.from === 'completion') });
      if (st.comment === null) out.commentAt = null;
    } else if (ev.type === 'unterminated') {
      // a one-line string left open across a line end: broken code from its quote (or, the prefix's, the line end)
      out.broken = ev.entry.from === 'completion' ? ev.entry.at : ev.at;
      break;
    } else if (ev.type === 'close') {
      // a completion bracket above the match would be closed by the wrong closer; a prefix one was a misread
      if (ev.match < 0 || st.stack.slice(ev.match + 1).some((e) => e.from === 'completion')) {
        out.broken = ev.at;
        break;
      }
      const e = st.stack[ev.match]!;
      if (e.from === 'prefix' && e.closedAt >= 0) out.overruns.push({ at: ev.at, entry: e });
      st.stack.length = ev.match;
    }
  }
  if (st.comment === null) out.commentAt = null;
  return out;
}

/**
 * Rule 2: the number of line-rest characters the completion replaces, or null if it cannot: the closers it
 * duplicates must start the line's rest (spaces aside), and what follows them must be blank or the completion's end
 * (without brackets or quotes).
 */
function replaceable(text: string, overruns: Array<{ at: number; entry: Open }>, lineRest: string): number | null {
  let pos = 0;
  for (const { entry } of overruns) {
    while (pos < lineRest.length && (lineRest[pos] === ' ' || lineRest[pos] === '\t')) pos++;
    if (entry.closedAt !== pos) return null;
    pos += entry.close.length;
  }
  const after = lineRest.slice(pos).trim();
  if (after === '') return pos;
  // `foo(|);` + `x) + 1;`: the `;` goes too (only punctuation without brackets: those would need pairing again)
  if (!/[()[\]{}'"`]/.test(after) && text.trimEnd().endsWith(after)) return lineRest.trimEnd().length;
  return null;
}

// --- closing what is open ----------------------------------------------------------------------------------------

interface Lines {
  text: string;
  linePrefix: string;
  syn: Syntax;
  eol: string;
}

/** The line (of prefix-line + completion) an entry opened on: its indentation and what follows the opener. */
function lineOf(e: Open, l: Lines): { indent: string; after: string } {
  const full = l.linePrefix + l.text;
  const pos = l.linePrefix.length + e.at;
  const start = full.lastIndexOf('\n', pos - 1) + 1;
  let end = full.indexOf('\n', pos);
  if (end < 0) end = full.length;
  const openLen = e.interp ? 2 : e.quote ? e.quote.open.length : 1;
  return { indent: /^[ \t]*/.exec(full.slice(start))![0], after: full.slice(pos + openLen, end) };
}

/** A bracket that ends its line (comment aside): its closer belongs on a line of its own. */
function isBlock(e: Open, l: Lines): boolean {
  if (e.quote || e.interp) return false;
  let after = lineOf(e, l).after;
  for (const lc of l.syn.line) {
    const k = after.indexOf(lc);
    if (k >= 0) after = after.slice(0, k);
  }
  return after.trim() === '';
}

/** Appends the closers of `open` (bottom first in the array), innermost first. */
function closeAll(text: string, open: Open[], l: Lines): string {
  let t = text;
  for (const e of [...open].reverse()) {
    if (isBlock(e, { ...l, text })) {
      t = t.trimEnd() + l.eol + lineOf(e, { ...l, text }).indent + e.close;
      continue;
    }
    let closer = e.close;
    if (e.close === '}' && !e.interp && /^ /.test(lineOf(e, { ...l, text }).after)) closer = ' }';
    // inline: before a trailing `;` written inside the bracket (`foo(a, b;` -> `foo(a, b);`), but a brace's `;`
    // ends a statement inside it (`{ stop();` -> `{ stop(); }`)
    const tail = e.quote || e.close === '}' ? null : /;\s*$/.exec(t);
    if (tail && tail.index > e.at) t = t.slice(0, tail.index) + closer + t.slice(tail.index);
    else t = (e.quote ? t : t.trimEnd()) + closer;
  }
  return t;
}
