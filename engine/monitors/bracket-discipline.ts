/**
 * The bracket discipline monitor: the suggestion may not close what it did not open, in the decode loop rather than
 * only after the fact (post-processing cuts a suggestion at such a closer; masked here, the model writes something
 * else instead). A token is refused when, lexed at the end of the text so far (engine/postprocess/bracket-lexer.ts,
 * the same lexer post-processing reads the document with), it
 *   - closes nothing open, or closes the wrong bracket (one the suggestion opened is still open above the match);
 *   - closes a bracket of the prefix that the suffix closes after the cursor's line (`}` of the enclosing function:
 *     the file's own `}` below would then close nothing). One the suffix closes on the cursor's line may be closed:
 *     the suggestion then replaces the editor's auto-inserted closer;
 *   - ends a line inside a one-line string.
 * Brackets the suggestion leaves open are post-processing's business (it closes them at the end).
 *
 * Checking a token costs a lex of its few bytes, so the monitor works by sample-then-verify: reject() judges the
 * sampled token, and only after a rejection does allowed() build
 * the mask over the vocabulary's tokens that hold a closer, a quote or a line end, cached per lexer state.
 */
import type { DecodeState } from '../decode/logits-processor.js';
import type { TextTokenizer } from '../tokenizer/types.js';
import { copy, cursorWindow, lex, lexPrefix, scanSuffix, type LexState, type Open, type Syntax } from '../postprocess/bracket-lexer.js';
import { emptyStats, type Monitor } from './monitor.js';

/** Masks kept per tokenizer (a handful of states recur: inside a call, a block, a string). */
const MASK_CACHE = 256;

/** The vocabulary's tokens that can close, end a string or end a line, decoded once per tokenizer. */
export class BracketTokens {
  /** Ids of the tokens that matter to the discipline; every other token is always allowed. */
  readonly ids: Uint32Array;
  /** Their text (bytes read as Latin-1: only ASCII matters to the lexer). */
  readonly texts: string[];
  /** The mask with every token allowed, the base the refused ones are cleared from. */
  readonly all: Uint32Array;
  /**
   * Masks by lexer-state signature (BracketDisciplineMonitor.signature: everything a token's legality depends on),
   * shared by the requests of one tokenizer: a mask costs a lex of every token here, milliseconds on a 151k vocabulary.
   */
  readonly masks = new Map<string, Uint32Array>();

  constructor(tok: TextTokenizer) {
    const ids: number[] = [];
    this.texts = [];
    this.all = new Uint32Array(Math.ceil(tok.vocabSize / 32)).fill(0xffffffff);
    for (let id = 0; id < tok.vocabSize; id++) {
      const b = tok.tokenBytes(id);
      if (!b.some(significant)) continue;
      ids.push(id);
      this.texts.push(latin1(b));
    }
    this.ids = Uint32Array.from(ids);
  }
}

function latin1(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');
}

export class BracketDisciplineMonitor implements Monitor {
  readonly kind = 'brackets';
  readonly stats = emptyStats();
  private readonly start: LexState;
  /** The prefix's last characters, for the lexer's look-behind. */
  private readonly before: string;
  /** Length of the cursor line's rest: a prefix bracket the suffix closes within it may be closed (a replacement). */
  private readonly lineRest: number;
  /** Where the cursor's line starts in the lexed prefix. */
  private readonly lineStart: number;
  /** The step at which this monitor refused the sampled token (its mask is built only then). */
  private refusedAt = -1;
  private at: { text: string; st: LexState } | null = null;

  constructor(
    prefix: string,
    suffix: string,
    private readonly syn: Syntax,
    private readonly tokens: BracketTokens,
  ) {
    const { prefix: p, suffix: s } = cursorWindow(prefix, suffix);
    this.start = lexPrefix(p, syn);
    this.before = p.slice(-8);
    this.lineStart = p.lastIndexOf('\n') + 1;
    scanSuffix(s, this.start, syn, this.before); // marks where the suffix closes each prefix bracket
    const nl = s.indexOf('\n');
    this.lineRest = nl < 0 ? s.length : nl;
  }

  reject(_token: number, bytes: Uint8Array, state: DecodeState): boolean {
    if (!bytes.some(significant)) return false;
    const text = state.text;
    const ok = PARTIAL.test(text)
      ? // lexed together with the text: the token may finish what the text's last character began
        this.legal(text + latin1(bytes), copy(this.start), this.before, text.length)
      : this.legal(latin1(bytes), copy(this.stateAt(text)), this.lookBehind(text), 0);
    if (!ok) {
      this.stats.triggers++;
      this.refusedAt = state.step;
    }
    return !ok;
  }

  allowed(state: DecodeState): Uint32Array | null {
    // only once this monitor refused the sampled token: most steps write no closer, and those reject() judges
    if (!state.strict || this.refusedAt !== state.step || PARTIAL.test(state.text)) return null;
    const st = this.stateAt(state.text);
    const before = this.lookBehind(state.text);
    const key = this.signature(st, before);
    let mask = this.tokens.masks.get(key);
    if (!mask) {
      mask = Uint32Array.from(this.tokens.all);
      for (let i = 0; i < this.tokens.ids.length; i++) {
        if (!this.legal(this.tokens.texts[i]!, copy(st), before, 0)) {
          const id = this.tokens.ids[i]!;
          mask[id >>> 5]! &= ~(1 << (id & 31));
        }
      }
      if (this.tokens.masks.size >= MASK_CACHE) this.tokens.masks.clear();
      this.tokens.masks.set(key, mask);
    }
    this.stats.maskedSteps++;
    return mask;
  }

  private lookBehind(text: string): string {
    return (this.before + text).slice(-8);
  }

  /** The lexer state after the generated text (what it broke, if anything, was let through by another path). */
  private stateAt(text: string): LexState {
    if (this.at?.text === text) return this.at.st;
    const st = copy(this.start);
    this.legal(text, st, this.before, Infinity);
    this.at = { text, st };
    return st;
  }

  /** Lexes `text` from `st` (which it advances); whether what it writes from offset `from` on keeps the discipline. */
  private legal(text: string, st: LexState, before: string, from: number): boolean {
    for (const ev of lex(text, st, this.syn, before, 'completion')) {
      // a line ended inside a one-line string, unless it is the prefix's and the line's rest closes it (`"ab|"`)
      if (ev.type === 'unterminated' && ev.at >= from && !(ev.entry.from === 'prefix' && ev.entry.closedAt >= 0)) return false;
      if (ev.type !== 'close') continue;
      if (ev.at >= from) {
        if (ev.match < 0) return false;
        if (st.stack.slice(ev.match + 1).some((e) => e.from === 'completion')) return false;
        if (this.closedBelow(st.stack[ev.match]!)) return false;
      }
      if (ev.match >= 0) st.stack.length = ev.match;
    }
    return true;
  }

  /**
   * A bracket of an earlier line that the suffix closes after the cursor's line (the enclosing block): the file's own
   * closer is below. Brackets and strings opened on the cursor's line may be closed: what the lexer reads as their
   * closer further down may belong to something else (the line's own closer was deleted with the rest of the line).
   */
  private closedBelow(e: Open): boolean {
    return e.from === 'prefix' && !e.quote && !e.interp && e.at < this.lineStart && e.closedAt > this.lineRest;
  }

  /** What a token's legality depends on: the comment state, the innermost open entries, the look-behind. */
  private signature(st: LexState, before: string): string {
    const top = st.stack.slice(-8).map((e) => `${e.close}${e.from[0]}${e.quote ? e.quote.open : ''}${e.interp ? 'i' : ''}${this.closedBelow(e) ? 'b' : ''}`);
    return `${this.syn.quotes.map((q) => q.open).join('')}${this.syn.line.join('')}${this.syn.regex ? 'r' : ''}|${st.comment ?? ''}|${st.stack.length > 8 ? '+' : ''}${top.join(',')}|${/[A-Za-z0-9_]$/.test(before) ? 'w' : ''}`;
  }
}

/** A text ending so may be partway through a longer construct (an escape, a comment mark, `${`, a triple quote). */
const PARTIAL = /[\\/*$"'`]$/;

/** Bytes that can close a bracket, end a string or end a line. */
function significant(c: number): boolean {
  return c === 0x29 || c === 0x5d || c === 0x7d || c === 0x0a || c === 0x22 || c === 0x27 || c === 0x60;
}
