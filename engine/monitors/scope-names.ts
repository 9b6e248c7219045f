/**
 * The scope-names monitor: a name that starts where an expression or a type begins (after `=`, `(`, `,`, an
 * operator, `return`, `:`...) must be one the checker knows there: a local, a parameter, an import, a global, or a
 * keyword that can begin the expression. This is TS2304 "cannot find name" prevented while decoding.
 *
 * Where a new name may be declared instead (a parameter, an object literal's key), TypeScript's completion list says
 * so (isNewIdentifierLocation) and the oracle answers null: no constraint. A call's argument is the exception: a new
 * name there can only be an arrow function's parameter (`xs.map(x => ...)`), so a name the checker does not know is
 * let through only on the condition that `=>` follows it; a token that ends it otherwise is rejected, and the strict
 * pass allows only blanks and `=>` there.
 *
 * Sample-then-verify: most tokens after an operator are not the start of a name, so the oracle is asked only when
 * the sampled token starts one: a name begins in it after blanks or after punctuation that is part of the same token
 * (BPE vocabularies are full of `(value`, `[key`, `(this`: a thousand of the embedded model's 16k tokens open a
 * bracket and a name at once, and the name in them must be checked like any other). A name that starts no legal name
 * is rejected; the strict pass then allows tokens that start a legal name (after blanks) and tokens with no name in
 * them (a number, a string, a bracket alone), so the bracket and the name come as two tokens, each judged. While the
 * name is being written, its continuation is masked to the legal names, and the settle/fast-forward rules of the
 * other name monitors apply.
 */
import type { DecodeState } from '../decode/logits-processor.js';
import type { TokenMasks } from '../decode/mask/token-mask.js';
import type { TextTokenizer } from '../tokenizer/types.js';
import type { Awaitable } from '../analysis/oracle.js';
import { Answers, emptyStats, onlyContinuation, settleName, type Monitor } from './monitor.js';

/**
 * Names that may start at `offset` of `text` (with `arrowParams`: or a new one followed by `=>`), or null for no
 * constraint.
 */
export type ScopeOracle = (text: string, offset: number) => Awaitable<ScopeAnswer | null>;
export interface ScopeAnswer {
  names: string[];
  arrowParams: boolean;
}

const NAME_START = /[A-Za-z_$]/;

/**
 * Where an expression or a type begins: after an opener, a separator, an operator (`a < b` needs its spaces: `<`
 * alone may open type arguments or JSX), or a keyword that takes an expression. A `.` never: that is a member.
 */
const CONTEXT = /(?:[([{,;=+\-*/%!&|^~?:>]|\s<|(?:^|[^\w$.])(?:return|await|typeof|throw|yield|void|delete|case|in|of|instanceof|else|do))\s*$/;

/** Per vocabulary: where a name begins in each token, and the tokens with no name in them. */
export class NameStarts {
  /** Tokens with no name beginning in them (a number, a string, a bracket, blanks). */
  readonly noName: Uint32Array;
  /**
   * Per token, the byte offset where the first name begins in it (-1: none): at a letter, `_` or `$` that starts the
   * token or follows a blank or a punctuation byte of it (not a `.`: that is a member, the dereference monitor's),
   * with only ASCII before it, so the offset is also a character offset.
   */
  readonly nameAt: Int16Array;
  /** The tokens that may follow an arrow function's parameter name: blanks, `=`, or `=>` and more (after blanks). */
  readonly arrow: Uint32Array;
  /** The tokens that may follow its `=`: those that start with `>` (and then may begin the body). */
  readonly arrowEnd: Uint32Array;
  /** The tokens that may begin an arrow's body right after its `=>` (see beginsBody). */
  readonly body: Uint32Array;
  /** The tokens that go on with a name (they start with a letter, a digit, `_` or `$`). */
  readonly nameGoesOn: Uint32Array;

  constructor(tok: TextTokenizer) {
    const words = Math.ceil(tok.vocabSize / 32);
    this.noName = new Uint32Array(words);
    this.arrow = new Uint32Array(words);
    this.arrowEnd = new Uint32Array(words);
    this.body = new Uint32Array(words);
    this.nameGoesOn = new Uint32Array(words);
    this.nameAt = new Int16Array(tok.vocabSize).fill(-1);
    for (let id = 0; id < tok.vocabSize; id++) {
      const b = tok.tokenBytes(id);
      const at = firstNameAt(b);
      if (at >= 0) this.nameAt[id] = at;
      else this.noName[id >>> 5]! |= 1 << (id & 31);
      const s = new TextDecoder().decode(b);
      if (b.length > 0 && leadsToArrow(s)) this.arrow[id >>> 5]! |= 1 << (id & 31);
      if (b[0] === 0x3e && beginsBody(s.slice(1))) this.arrowEnd[id >>> 5]! |= 1 << (id & 31);
      if (b.length > 0 && beginsBody(s)) this.body[id >>> 5]! |= 1 << (id & 31);
      if (/^[\w$]/.test(s)) this.nameGoesOn[id >>> 5]! |= 1 << (id & 31);
    }
  }
}

/** See NameStarts.nameAt. */
function firstNameAt(b: Uint8Array): number {
  for (let i = 0; i < b.length && b[i]! < 0x80; i++) {
    if (!NAME_START.test(String.fromCharCode(b[i]!))) continue;
    const before = i === 0 ? '' : String.fromCharCode(b[i - 1]!);
    if (i === 0 || !/[\w$.]/.test(before)) return i;
  }
  return -1;
}

/**
 * Whether `s`, written right after a name, keeps `=>` possible next: blanks only, `=`, or `=>` (after blanks) and
 * then what may begin the arrow's body.
 */
function leadsToArrow(s: string): boolean {
  const t = s.replace(/^[ \t]+/, '');
  return t === '' || t === '=' || (t.startsWith('=>') && beginsBody(t.slice(2)));
}

/** Whether `s` may begin an arrow function's body (or is blank): not a closer, a separator or an operator's tail. */
function beginsBody(s: string): boolean {
  return !/^\s*[)\]},;:>=.?|&*/%]/.test(s);
}

/** Words that cannot name a parameter (reserved, in strict mode too: modules are strict). */
const RESERVED = new Set(
  'break case catch class const continue debugger default delete do else enum export extends false finally for function if import in instanceof new null return super switch this throw true try typeof var void while with yield let static implements interface package private protected public await'.split(' '),
);

export class ScopeNamesMonitor implements Monitor {
  readonly kind = 'scope-names';
  readonly stats = emptyStats();
  /** site (siteKey) -> legal names (null: no constraint) */
  private readonly names = new Answers<ScopeAnswer, string>(this.stats);
  /** Where an unknown name was let through as an arrow function's parameter (it must be followed by `=>`). */
  private provisional: number | null = null;
  /** Per site (siteKey): the strict mask (a legal name, with or without leading spaces, or no name at all). */
  private readonly strictMasks = new Map<string, Uint32Array>();
  /**
   * The step at which this monitor rejected a token, and its strict pass's mask: the legal names there (or no name);
   * after an arrow parameter, what keeps `=>` next (after its `=`: a `>`; after a reserved word: more of the name).
   */
  private rejected: { step: number; mask: Uint32Array } | null = null;

  constructor(
    private readonly prefix: string,
    private readonly suffix: string,
    private readonly oracle: ScopeOracle,
    private readonly masks: TokenMasks,
    private readonly starts: NameStarts,
  ) {}

  allowed(state: DecodeState): Uint32Array | null {
    const text = this.prefix + state.text;
    if (state.strict && this.rejected?.step === state.step) {
      this.stats.maskedSteps++;
      return this.rejected.mask;
    }
    if (this.provisional !== null) {
      // just after a let-through parameter's `=>`: the body must begin (`value =>)` is a syntax error)
      const arrow = /([A-Za-z_$][\w$]*)[ \t]*=>[ \t]*$/.exec(text);
      if (arrow?.index === this.provisional) {
        this.stats.maskedSteps++;
        return this.starts.body;
      }
    }
    const site = nameSite(text);
    if (!site || site.typed === '') return null;
    const names = this.names.get(siteKey(text, site.start))?.names;
    if (!names || !names.some((n) => n.startsWith(site.typed))) return null;
    this.stats.maskedSteps++;
    return this.masks.allowed(names, site.typed);
  }

  reject(token: number, bytes: Uint8Array, state: DecodeState): boolean | Promise<boolean> {
    const text = this.prefix + state.text;
    const param = this.pendingParam(text);
    if (param !== null) {
      // an arrow parameter's name, let through: what ends it must keep `=>` next
      const written = new TextDecoder().decode(bytes);
      if (param.eq) {
        if (written.startsWith('>') && beginsBody(written.slice(1))) return false;
      } else {
        if (param.blank === '' && /^[\w$]/.test(written)) return false; // the name goes on
        // a reserved word names no parameter (`add(package`): only more of the name may follow
        const reserved = param.blank === '' && RESERVED.has(text.slice(param.start));
        if (!reserved && leadsToArrow(param.blank + written)) return false;
        if (reserved) {
          this.rejected = { step: state.step, mask: this.starts.nameGoesOn };
          return true;
        }
      }
      this.rejected = { step: state.step, mask: param.eq ? this.starts.arrowEnd : this.starts.arrow };
      return true;
    }
    const at = this.starts.nameAt[token]!;
    if (at < 0) return false;
    // the name the token starts must begin where an expression does (after what the token writes before it)
    const before = text + new TextDecoder().decode(bytes.subarray(0, at));
    if (!CONTEXT.test(before) || (at === 0 && /[\w$]$/.test(text))) return false;
    const start = before.length;
    const key = siteKey(before, start);
    const written = new TextDecoder().decode(bytes.subarray(at));
    const ident = /^[\w$]*/.exec(written)![0];
    const judge = (answer: ScopeAnswer | null) => {
      if (!answer) return false;
      const { names } = answer;
      // a name that the token finishes (more follows it in the token) must be legal; else it must lead to one
      const finished = ident.length < written.length;
      if (finished ? names.includes(ident) : names.some((n) => n.startsWith(ident))) return false;
      if (answer.arrowParams && !(finished && RESERVED.has(ident)) && (!finished || leadsToArrow(written.slice(ident.length)))) {
        this.provisional = start;
        return false;
      }
      this.rejected = { step: state.step, mask: this.strictMask(key, names) };
      return true;
    };
    const known = this.names.get(key);
    if (known !== undefined) return judge(known);
    return this.names.ask(key, () => this.oracle(before + this.suffix, start)).then(judge);
  }

  forced(state: DecodeState): string | null {
    const text = this.prefix + state.text;
    const site = nameSite(text);
    const names = site && site.typed !== '' ? this.names.get(siteKey(text, site.start))?.names : null;
    return names ? onlyContinuation(names, site!.typed) : null;
  }

  settle(text: string): { append: string } | { cut: number } | null {
    // an arrow parameter with no `=>` after it is no argument: cut back to before it
    const param = this.pendingParam(this.prefix + text);
    if (param !== null) return { cut: Math.max(0, param.start - this.prefix.length) };
    const site = nameSite(this.prefix + text);
    const names = site && site.typed !== '' ? this.names.get(siteKey(this.prefix + text, site.start))?.names : null;
    return names ? settleName(names, site!.typed, text.length) : null;
  }

  /**
   * The arrow parameter `text` ends in (its name, then only blanks, then perhaps the `=` of `=>`), if one was let
   * through; else null.
   */
  private pendingParam(text: string): { start: number; blank: string; eq: boolean } | null {
    if (this.provisional === null) return null;
    const m = /([A-Za-z_$][\w$]*)([ \t]*)(=?)$/.exec(text);
    if (!m || m.index !== this.provisional) return null;
    return { start: m.index, blank: m[2]!, eq: m[3] === '=' };
  }

  private strictMask(key: string, names: string[]): Uint32Array {
    let m = this.strictMasks.get(key);
    if (!m) {
      const spelled = this.masks.allowed([...names, ...names.map((n) => ` ${n}`)], '');
      m = new Uint32Array(spelled.length);
      for (let w = 0; w < m.length; w++) m[w] = spelled[w]! | (this.starts.noName[w] ?? 0);
      this.strictMasks.set(key, m);
    }
    return m;
  }
}

/**
 * A site's key: its offset and the text just before it. Tokens that write different punctuation before a name
 * (`(value`, `[key`) put names at the same offset in different places; the answer of one is not the other's.
 */
function siteKey(text: string, start: number): string {
  return `${start}:${text.slice(Math.max(0, start - 16), start)}`;
}

/** The name being written at the end of `text` where an expression begins: where it starts and what is typed. */
function nameSite(text: string): { start: number; typed: string } | null {
  const typed = /[A-Za-z_$][\w$]*$/.exec(text)?.[0];
  if (!typed) return null;
  const start = text.length - typed.length;
  return CONTEXT.test(text.slice(Math.max(0, start - 64), start)) ? { start, typed } : null;
}
