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
 *     is `a`). A bracket or string opened on the cursor's line whose closer the lexer finds only on a later line
 *     is no such case: that closer may be another's (the line's own went with the deleted rest of the line), so
 *     the completion's closer stays and the checker judges the result.
 *  3. Brackets the completion leaves open are closed by closers the suffix has that close nothing today (the user
 *     deleted an opener): nothing to do. Otherwise:
 *     - a completion that ended on its own (end of line or block, end of sequence) gets the closers appended,
 *       innermost first: inline (`foo(a` -> `foo(a)`, before a trailing `;`) or, for a bracket that ended its line,
 *       on a line of its own at its line's indentation; but a `(` or `[` it opened last and left empty is cut off
 *       (`foo(` -> `foo`): what goes inside was to come on the next lines, and an empty list is a guess;
 *     - a completion cut by the token limit is cut back instead: to the last line end where only such block
 *       brackets are open (which are then closed on lines of their own), else before its first unclosed opener.
 * Strings, comments and template literals are lexed per language (by file extension), so brackets inside them do
 * not count; `<`/`>` are never brackets.
 */

import { copy, cursorWindow, lex, lexPrefix, scanSuffix, syntaxFor, type LexState, type Open, type Syntax } from './bracket-lexer.js';

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

export function balanceBrackets(text: string, ctx: BalanceContext): Balanced {
  const syn = syntaxFor(ctx.filePath);
  const { prefix, suffix } = cursorWindow(ctx.prefix, ctx.suffix);
  const lineRest = suffix.slice(0, suffix.indexOf('\n') < 0 ? suffix.length : suffix.indexOf('\n'));
  const linePrefix = prefix.slice(prefix.lastIndexOf('\n') + 1);
  const eol = /\r\n/.test(ctx.prefix.slice(-2000) + suffix.slice(0, 2000)) ? '\r\n' : '\n';

  // the prefix: its open brackets (and the string or comment the cursor is in) start both other scans
  const start = lexPrefix(prefix, syn);
  const free = scanSuffix(suffix, start, syn, prefix.slice(-8));
  // A bracket or string opened on the cursor's line whose closer the lexer finds only on a later line: that closer
  // may be another's (the line's own was deleted with the rest of the line, as when retyping it), so closing it here
  // is no overrun; the checker judges the result (engine/verify).
  const cursorLine = prefix.lastIndexOf('\n') + 1;
  const below = (e: Open) => e.at >= cursorLine && e.closedAt > lineRest.length;

  let scan = scanCompletion(text, start, syn, prefix.slice(-8), below);
  let finished = ctx.finished;
  if (scan.broken !== null) {
    // rule 1: a closer that breaks the structure; what the model wrote from there on is not used
    text = text.slice(0, scan.broken).trimEnd();
    scan = scanCompletion(text, start, syn, prefix.slice(-8), below);
    finished = false;
  }
  if (scan.commentAt !== null && (scan.end.comment === 'block' || lineRest.trim() !== '')) {
    // a comment the completion leaves open would swallow the rest of the line (or of the file)
    text = text.slice(0, scan.commentAt).trimEnd();
    scan = scanCompletion(text, start, syn, prefix.slice(-8), below);
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
  // an argument list or array opened last and left empty at the end (`Object.create(` ending the line): the model
  // meant to go on below; closing it empty, or on a line of its own, is a guess (`create(\n)` is TS2554): not shown
  const last = open[open.length - 1]!;
  if (finished && last.close !== '}' && !last.quote && text.slice(last.at + 1).trim() === '') return balanceBrackets(text.slice(0, last.at).trimEnd(), ctx);
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
  const { prefix } = cursorWindow(ctx.prefix);
  const lineStart = prefix.lastIndexOf('\n') + 1;
  const start = lexPrefix(prefix, syn);
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

function scanCompletion(text: string, start: LexState, syn: Syntax, before: string, below: (e: Open) => boolean): CompletionScan {
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
      if (e.from === 'prefix' && e.closedAt >= 0 && !below(e)) out.overruns.push({ at: ev.at, entry: e });
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

/**
 * Where a completion may be cut so that the brackets it leaves open are what the lines below close: right after an
 * opener, where the suffix, read from there, has the fewest closers that close the wrong bracket or nothing, and
 * fewer than read from the cursor. The case is a call whose arguments the file goes on with below (`subscribe(` with
 * `next: ...\n});` under it): the model tends to close the call on the cursor's line, which leaves the suffix's
 * `});` closing the wrong things; cut after its `({`, the lines below close it. Offsets into `text`, longest first.
 */
export function cutsOpenForSuffix(text: string, ctx: Pick<BalanceContext, 'prefix' | 'suffix' | 'filePath'>): number[] {
  const { syn, suffix, start, before } = atCursor(ctx);
  const today = strayClosers(suffix, start, syn, before);
  if (today === 0) return [];
  const cuts: { at: number; stray: number }[] = [];
  const st = copy(start);
  for (const ev of lex(text, st, syn, before, 'completion')) {
    if (ev.type === 'unterminated' || ev.type === 'comment' || (ev.type === 'close' && !closesInnermost(ev.match, st))) break; // broken from here on
    if (ev.type === 'close') st.stack.length = ev.match;
    if (ev.type !== 'open' || ev.entry.quote || ev.entry.interp) continue;
    const stray = strayClosers(suffix, st, syn, (before + text.slice(0, ev.at + 1)).slice(-8));
    if (stray < today) cuts.push({ at: ev.at + 1, stray });
  }
  // the cuts that fit the suffix best (a partial fit, `subscribe(` for `});`, is only tried where nothing fits better)
  const best = Math.min(...cuts.map((c) => c.stray));
  return cuts.filter((c) => c.stray === best).map((c) => c.at).reverse();
}

/**
 * How many closers in the lines after the cursor close nothing or the wrong bracket once `text` is written at the
 * cursor: what the document still needs the cursor's line to open (0 in well-formed code).
 */
export function strayClosersAfter(text: string, ctx: Pick<BalanceContext, 'prefix' | 'suffix' | 'filePath'>): number {
  const { syn, suffix, start: st, before } = atCursor(ctx);
  for (const ev of lex(text, st, syn, before, 'completion')) if (ev.type === 'close' && ev.match >= 0) st.stack.length = ev.match;
  return strayClosers(suffix, st, syn, (before + text).slice(-8));
}

/** The suffix window and the lexer's state at the cursor (the prefix's open brackets), with the look-behind there. */
function atCursor(ctx: Pick<BalanceContext, 'prefix' | 'suffix' | 'filePath'>): { syn: Syntax; suffix: string; start: LexState; before: string } {
  const syn = syntaxFor(ctx.filePath);
  const { prefix, suffix } = cursorWindow(ctx.prefix, ctx.suffix);
  return { syn, suffix, start: lexPrefix(prefix, syn), before: prefix.slice(-8) };
}

/** Closers in `suffix`, read from `start`, that close nothing or not the innermost open bracket. */
function strayClosers(suffix: string, start: LexState, syn: Syntax, before: string): number {
  const st = copy(start);
  let stray = 0;
  for (const ev of lex(suffix, st, syn, before, 'suffix')) {
    if (ev.type !== 'close') continue;
    if (!closesInnermost(ev.match, st)) stray++;
    if (ev.match >= 0) st.stack.length = ev.match;
  }
  return stray;
}

/** Whether a closer that matched stack index `match` (-1: nothing) closes the innermost open bracket. */
function closesInnermost(match: number, st: LexState): boolean {
  return match >= 0 && match === st.stack.length - 1;
}
