/**
 * The call-arity monitor: inside a call's argument list, no `)` before the required arguments are written, no
 * further `,` when no overload takes another argument (and none has a rest parameter), and no argument at all when
 * no overload takes one: then `)` is the only continuation and is forced (appended without a model step).
 *
 * State from the text each step: the call whose argument list the text ends in, the commas written and whether the
 * current argument is empty. A token that opens the call and goes on inside it (`()`, `();`, `(x)`: BPE writes the
 * commonest calls as one token) is judged after it is sampled, against the same signatures: `remove()` where
 * `remove` needs an argument is TS2554 as surely as a `)` alone would be. The signatures come from the oracle once per call site. Tokens are judged by their
 * bracket profile, precomputed once per vocabulary: whether their running bracket depth goes below zero (they close
 * the call: `)`, `))`, `);`) and whether they write a comma at depth zero (`, `, `),` does not: it closes first).
 */
import type { DecodeState } from '../decode/logits-processor.js';
import type { Awaitable, CallShape } from '../analysis/oracle.js';
import { Answers, emptyStats, type Monitor } from './monitor.js';
import type { TextTokenizer } from '../tokenizer/types.js';

export type { CallShape };

/** What the oracle says about the call whose `(` ends just before `offset` of `text`. */
export type CallOracle = (text: string, offset: number) => Awaitable<CallShape | null>;

/**
 * Per token: lowest running bracket depth (0 if it never closes), a bitmask of depths -4..3 where it writes ',', and
 * its first byte that is not whitespace (0 if none).
 */
export class BracketProfiles {
  readonly minDepth: Int8Array;
  readonly commaDepths: Uint8Array;
  readonly firstSolid: Uint8Array;
  /** Tokens that do not open a parenthesis and go on after it in the same token (`(`, `foo(` and `x` are in). */
  readonly noInnerCall: Uint32Array;
  /** Tokens that write no comma after closing more than they opened (`],` and `), ` are out). */
  readonly noCommaAfterClose: Uint32Array;

  constructor(tok: TextTokenizer) {
    this.minDepth = new Int8Array(tok.vocabSize);
    this.commaDepths = new Uint8Array(tok.vocabSize);
    this.firstSolid = new Uint8Array(tok.vocabSize);
    this.noInnerCall = new Uint32Array(Math.ceil(tok.vocabSize / 32));
    this.noCommaAfterClose = new Uint32Array(Math.ceil(tok.vocabSize / 32));
    for (let id = 0; id < tok.vocabSize; id++) {
      const b = tok.tokenBytes(id);
      const paren = b.indexOf(0x28);
      if (paren < 0 || paren === b.length - 1) this.noInnerCall[id >>> 5]! |= 1 << (id & 31);
      let depth = 0;
      let min = 0;
      let commas = 0;
      this.firstSolid[id] = b.find((c) => c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) ?? 0;
      for (const c of b) {
        if (c === 0x28 || c === 0x5b || c === 0x7b) depth++;
        else if (c === 0x29 || c === 0x5d || c === 0x7d) min = Math.min(min, --depth);
        else if (c === 0x2c && depth >= -4 && depth <= 3) commas |= 1 << (depth + 4);
      }
      this.minDepth[id] = Math.max(-128, min);
      this.commaDepths[id] = commas;
      if ((commas & 0x0f) === 0) this.noCommaAfterClose[id >>> 5]! |= 1 << (id & 31);
    }
  }

  private readonly masks = new Map<number, Uint32Array>();

  /**
   * The tokens allowed when closing the call (FORBID_CLOSE), another argument (FORBID_COMMA) or any argument
   * (FORBID_ARGUMENT: only whitespace, or `)` first) is not: made once per combination.
   */
  allowedWithout(forbid: number): Uint32Array {
    let m = this.masks.get(forbid);
    if (!m) {
      m = new Uint32Array(Math.ceil(this.minDepth.length / 32));
      for (let id = 0; id < this.minDepth.length; id++) {
        // the end of the text is at depth 0 of the argument list (see openCall): a token closes the call when its
        // running depth goes below 0, and adds an argument when it writes a comma at running depth 0
        const closes = this.minDepth[id]! < 0;
        const comma = (this.commaDepths[id]! & (1 << 4)) !== 0;
        const argument = this.firstSolid[id] !== 0 && this.firstSolid[id] !== 0x29;
        if (!((forbid & FORBID_CLOSE && closes) || (forbid & FORBID_COMMA && comma) || (forbid & FORBID_ARGUMENT && argument))) m[id >>> 5]! |= 1 << (id & 31);
      }
      this.masks.set(forbid, m);
    }
    return m;
  }
}

const FORBID_CLOSE = 1;
const FORBID_COMMA = 2;
const FORBID_ARGUMENT = 4;

export class CallArityMonitor implements Monitor {
  readonly kind = 'call-arity';
  readonly stats = emptyStats();
  private readonly shapes = new Answers<CallShape>(this.stats);
  /**
   * The step at which this monitor rejected a token, and the strict pass's mask: `(` alone after a token that opened
   * a call and went on in it; no comma after a closer after one that closed a bracket and wrote too many arguments.
   */
  private rejected: { step: number; mask: Uint32Array } | null = null;

  constructor(
    private readonly prefix: string,
    private readonly suffix: string,
    private readonly oracle: CallOracle,
    private readonly profiles: BracketProfiles,
  ) {}

  prepare(state: DecodeState): Promise<unknown> | undefined {
    const text = this.prefix + state.text;
    const site = openCall(text);
    if (!site || this.shapes.get(site.open) !== undefined) return undefined;
    return this.shapeAt(text, site.open) as Promise<CallShape | null>;
  }

  /** The signatures of the call whose `(` is at `open` of `text`: known, or asked just inside the parenthesis. */
  private shapeAt(text: string, open: number): CallShape | null | Promise<CallShape | null> {
    const known = this.shapes.get(open);
    if (known !== undefined) return known;
    // the document up to the parenthesis, then the rest of the document after the cursor
    return this.shapes.ask(open, () => this.oracle(text.slice(0, open + 1) + this.suffix, open + 1));
  }

  /** Applies `judge` to the signatures at `open`, now or once the oracle answers. */
  private judgeAt(text: string, open: number, judge: (shape: CallShape | null) => boolean): boolean | Promise<boolean> {
    const shape = this.shapeAt(text, open);
    return shape instanceof Promise ? shape.then(judge) : judge(shape);
  }

  /** `)` when no overload takes an argument and none is written yet: the call's only continuation. */
  forced(state: DecodeState): string | null {
    const site = openCall(this.prefix + state.text);
    return site && this.takesNone(site) ? ')' : null;
  }

  allowed(state: DecodeState): Uint32Array | null {
    if (state.strict && this.rejected?.step === state.step) {
      this.stats.maskedSteps++;
      return this.rejected.mask;
    }
    const text = this.prefix + state.text;
    const site = openCall(text);
    if (!site || site.spread) return null;
    const shape = this.shapes.get(site.open);
    if (!shape) return null;
    if (this.takesNone(site)) {
      this.stats.maskedSteps++;
      return this.profiles.allowedWithout(FORBID_ARGUMENT);
    }
    // arguments written so far, counting the current one if it has any text
    const written = site.commas + (site.currentEmpty ? 0 : 1);
    const forbidClose = written < shape.minArgs && !(site.commas === 0 && site.currentEmpty && shape.minArgs === 0);
    const forbidComma = site.commas + 1 >= shape.maxArgs;
    if (!forbidClose && !forbidComma) return null;
    this.stats.maskedSteps++;
    return this.profiles.allowedWithout((forbidClose ? FORBID_CLOSE : 0) | (forbidComma ? FORBID_COMMA : 0));
  }

  reject(_token: number, bytes: Uint8Array, state: DecodeState): boolean | Promise<boolean> {
    const written = new TextDecoder().decode(bytes);
    const paren = written.indexOf('(');
    if (paren < 0 || paren === written.length - 1) return this.rejectOuterComma(written, state);
    const opened = this.prefix + state.text + written.slice(0, paren + 1);
    const site = openCall(opened);
    if (!site || site.open !== opened.length - 1) return false;
    const inside = argumentsIn(written.slice(paren + 1));
    if (!inside) return false;
    return this.judgeAt(opened, site.open, (shape) => {
      if (!shape || !breaksArity(inside, shape)) return false;
      this.rejected = { step: state.step, mask: this.profiles.noInnerCall };
      return true;
    });
  }

  /**
   * A token that closes the bracket the text is in and writes a comma in the call around it (`], count)` inside
   * `race([a`): the step-by-step mask saw no call at the text's end (the innermost open bracket was the `[`), so
   * the outer call's argument count is judged here.
   */
  private rejectOuterComma(written: string, state: DecodeState): boolean | Promise<boolean> {
    if (!written.includes(',')) return false;
    const text = this.prefix + state.text;
    const after = openCall(text + written);
    if (!after || after.spread || after.open >= text.length || after.commas === 0) return false;
    if (openCall(text)?.open === after.open) return false; // the same list: allowed() masked its commas already
    return this.judgeAt(text, after.open, (shape) => {
      if (!shape || after.commas + 1 <= shape.maxArgs) return false;
      this.rejected = { step: state.step, mask: this.profiles.noCommaAfterClose };
      return true;
    });
  }

  private takesNone(site: OpenCall): boolean {
    return !site.spread && site.commas === 0 && site.currentEmpty && this.shapes.get(site.open)?.maxArgs === 0;
  }
}

/** What a token writes inside the call it opens: top-level commas, whether it closes it, and with how many arguments. */
interface Inside {
  commas: number;
  closes: boolean;
  /** Arguments with text (the last one counts only if it has any). */
  args: number;
  /** Whether anything but blanks is written in the list. */
  any: boolean;
}

/** Reads `s`, written just after a call's `(`; null where it cannot judge (a quote, a spread, a comment). */
function argumentsIn(s: string): Inside | null {
  if (/["'`]|\.\.\.|\/[/*]/.test(s)) return null;
  let depth = 0;
  let commas = 0;
  let current = false;
  let any = false;
  for (const c of s) {
    if (c === '(' || c === '[' || c === '{') depth++;
    else if (c === ')' || c === ']' || c === '}') {
      if (--depth < 0) return { commas, closes: true, args: commas + (current ? 1 : 0), any };
    } else if (c === ',' && depth === 0) {
      commas++;
      current = false;
      any = true;
      continue;
    }
    if (!/\s/.test(c)) current = any = true;
  }
  return { commas, closes: false, args: commas + (current ? 1 : 0), any };
}

/** Whether what a token writes in the call cannot fit any of its signatures. */
function breaksArity(inside: Inside, shape: CallShape): boolean {
  if (shape.maxArgs === 0 && inside.any) return true;
  if (inside.commas + 1 > shape.maxArgs && inside.commas > 0) return true;
  return inside.closes && inside.args < shape.minArgs;
}

interface OpenCall {
  /** Offset of the call's `(`. */
  open: number;
  /** Top-level commas written since the `(`. */
  commas: number;
  /** Whether the current argument has no text yet. */
  currentEmpty: boolean;
  /** An argument spreads a list (`...xs`, `*args`, `**kw`): any count may follow, so no constraint. */
  spread: boolean;
}

/**
 * The call whose argument list the end of `text` is directly in: the innermost unclosed bracket is a `(` that
 * follows a callee. (Inside a nested unclosed bracket, e.g. an array literal argument, that bracket is the innermost
 * and there is no constraint.) Scans back at most 4,000 characters; a quote or comment on the way means no
 * constraint rather than a wrong one.
 */
export function openCall(text: string): OpenCall | null {
  let depth = 0;
  let commas = 0;
  let lastComma = -1;
  for (let i = text.length - 1; i >= Math.max(0, text.length - 4000); i--) {
    const c = text[i]!;
    if (c === '"' || c === "'" || c === '`') return null;
    if (c === '/' && (text[i - 1] === '/' || text[i - 1] === '*' || text[i + 1] === '*')) return null;
    if (c === ')' || c === ']' || c === '}') depth++;
    else if (c === '(' || c === '[' || c === '{') {
      if (depth > 0) {
        depth--;
        continue;
      }
      if (c !== '(') return null;
      // on the `(`'s own line, a line comment or an odd number of quotes before it: it sits in a comment or string
      const line = text.slice(text.lastIndexOf('\n', i) + 1, i);
      if (line.includes('//') || [/"/g, /'/g, /`/g].some((q) => (line.match(q)?.length ?? 0) % 2 === 1)) return null;
      const before = text.slice(Math.max(0, i - 32), i);
      if (!/[\w$)\]>]\s*$/.test(before) || /\b(if|for|while|switch|catch|function|return|typeof|await|yield)\s*$/.test(before)) return null;
      const currentStart = lastComma >= 0 ? lastComma + 1 : i + 1;
      const args = text.slice(i + 1);
      return { open: i, commas, currentEmpty: text.slice(currentStart).trim() === '', spread: /(?:^|,)\s*(?:\.\.\.|\*)/.test(args) };
    } else if (c === ',' && depth === 0) {
      commas++;
      if (lastComma < 0) lastComma = i;
    }
  }
  return null;
}
