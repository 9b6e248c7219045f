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
 * the sampled token starts one (its bytes after optional spaces begin with a letter, `_` or `$`). A name that starts
 * no legal name is rejected; the strict pass then allows tokens that start a legal name and tokens that start no
 * name at all (a number, a string, a bracket). While the name is being written, its continuation is masked to the
 * legal names, and the settle/fast-forward rules of the other name monitors apply.
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

/** Per vocabulary: the tokens that start no name (after optional spaces: a number, a string, a bracket, blanks). */
export class NameStarts {
  readonly noName: Uint32Array;
  /** How many spaces/tabs each token starts with before a name-start byte (-1: it starts no name). */
  readonly lead: Int16Array;
  /** The tokens that may follow an arrow function's parameter name: blanks, `=`, or `=>` and more (after blanks). */
  readonly arrow: Uint32Array;

  constructor(tok: TextTokenizer) {
    const words = Math.ceil(tok.vocabSize / 32);
    this.noName = new Uint32Array(words);
    this.arrow = new Uint32Array(words);
    this.lead = new Int16Array(tok.vocabSize).fill(-1);
    for (let id = 0; id < tok.vocabSize; id++) {
      const b = tok.tokenBytes(id);
      let i = 0;
      while (i < b.length && (b[i] === 0x20 || b[i] === 0x09)) i++;
      if (i < b.length && b[i]! < 0x80 && NAME_START.test(String.fromCharCode(b[i]!))) this.lead[id] = i;
      else this.noName[id >>> 5]! |= 1 << (id & 31);
      if (b.length > 0 && leadsToArrow(new TextDecoder().decode(b))) this.arrow[id >>> 5]! |= 1 << (id & 31);
    }
  }
}

/** Whether `s`, written right after a name, keeps `=>` possible next: blanks only, `=`, or `=>` (after blanks). */
function leadsToArrow(s: string): boolean {
  const t = s.replace(/^[ \t]+/, '');
  return t === '' || t === '=' || t.startsWith('=>');
}

export class ScopeNamesMonitor implements Monitor {
  readonly kind = 'scope-names';
  readonly stats = emptyStats();
  /** name-start offset -> legal names (null: no constraint) */
  private readonly names = new Answers<ScopeAnswer>(this.stats);
  /** Where an unknown name was let through as an arrow function's parameter (it must be followed by `=>`). */
  private provisional: number | null = null;
  /** Per site: the strict mask (a legal name, with or without leading spaces, or no name at all). */
  private readonly strictMasks = new Map<number, Uint32Array>();
  /** The step at which a name was rejected, and the legal names there (for the strict pass); names null: no `=>`. */
  private rejected: { step: number; start: number; names: string[] | null } | null = null;

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
      const { start, names } = this.rejected;
      return names ? this.strictMask(start, names) : this.starts.arrow;
    }
    const site = nameSite(text);
    if (!site || site.typed === '') return null;
    const names = this.names.get(site.start)?.names;
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
      if (param.blank === '' && /^[\w$]/.test(written)) return false; // the name goes on
      if (leadsToArrow(param.blank + written)) return false;
      this.rejected = { step: state.step, start: param.start, names: null };
      return true;
    }
    const lead = this.starts.lead[token]!;
    if (lead < 0) return false;
    // the name the token starts must begin where an expression does (with the token's spaces, or the text's)
    if (!CONTEXT.test(text) || (lead === 0 && /[\w$]$/.test(text))) return false;
    const start = text.length + lead;
    const written = new TextDecoder().decode(bytes.subarray(lead));
    const ident = /^[\w$]*/.exec(written)![0];
    const judge = (answer: ScopeAnswer | null) => {
      if (!answer) return false;
      const { names } = answer;
      // a name that the token finishes (more follows it in the token) must be legal; else it must lead to one
      const finished = ident.length < written.length;
      if (finished ? names.includes(ident) : names.some((n) => n.startsWith(ident))) return false;
      if (answer.arrowParams && (!finished || leadsToArrow(written.slice(ident.length)))) {
        this.provisional = start;
        return false;
      }
      this.rejected = { step: state.step, start, names };
      return true;
    };
    const known = this.names.get(start);
    if (known !== undefined) return judge(known);
    const shadow = text + ' '.repeat(lead);
    return this.names.ask(start, () => this.oracle(shadow + this.suffix, start)).then(judge);
  }

  forced(state: DecodeState): string | null {
    const site = nameSite(this.prefix + state.text);
    const names = site && site.typed !== '' ? this.names.get(site.start)?.names : null;
    return names ? onlyContinuation(names, site!.typed) : null;
  }

  settle(text: string): { append: string } | { cut: number } | null {
    // an arrow parameter with no `=>` after it is no argument: cut back to before it
    const param = this.pendingParam(this.prefix + text);
    if (param !== null) return { cut: Math.max(0, param.start - this.prefix.length) };
    const site = nameSite(this.prefix + text);
    const names = site && site.typed !== '' ? this.names.get(site.start)?.names : null;
    return names ? settleName(names, site!.typed, text.length) : null;
  }

  /** The arrow parameter `text` ends in (its name, then only blanks), if one was let through; else null. */
  private pendingParam(text: string): { start: number; blank: string } | null {
    if (this.provisional === null) return null;
    const m = /([A-Za-z_$][\w$]*)([ \t]*)$/.exec(text);
    if (!m || m.index !== this.provisional) return null;
    return { start: m.index, blank: m[2]! };
  }

  private strictMask(key: number, names: string[]): Uint32Array {
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

/** The name being written at the end of `text` where an expression begins: where it starts and what is typed. */
function nameSite(text: string): { start: number; typed: string } | null {
  const typed = /[A-Za-z_$][\w$]*$/.exec(text)?.[0];
  if (!typed) return null;
  const start = text.length - typed.length;
  return CONTEXT.test(text.slice(Math.max(0, start - 64), start)) ? { start, typed } : null;
}
