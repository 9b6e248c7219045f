/**
 * The dereference monitor: after `receiver.`, only members of the receiver's type.
 *
 * Its state is derived from the text each step, so it needs no bookkeeping across tokens:
 *  - the text (document before the cursor + generated text) ends inside `expr.ident` (possibly `expr.` with an
 *    empty ident): the member being written must be a prefix of, or complete, one of the receiver's members, and
 *    once complete may only be followed by a non-identifier character;
 *  - otherwise, if the sampled token starts with `.` and more (Qwen2 spells `obj.length` as `obj` `.length`), the
 *    receiver's members are looked up for `text + "."`; an illegal token (`.lenght`, `.#x`) is rejected and, in the
 *    loop's strict pass, tokens starting with `.` must spell a legal member (others stay allowed).
 * Member lists come from the type oracle, once per dot position per request (prepare() and reject() await them;
 * process() reads them). No answer from the oracle (not a member access, a string or comment, an unknown type, or
 * an oracle failure) means no constraint.
 */
import type { Awaitable } from '../analysis/oracle.js';
import type { DecodeState } from '../decode/logits-processor.js';
import { intersect, isAllowed, isIdentifierByte, type TokenMasks } from '../decode/mask/token-mask.js';
import { Answers, emptyStats, onlyContinuation, settleName, type Monitor } from './monitor.js';

/** Answers "members after the dot that ends just before `offset` of this text", or null. */
export type MemberOracle = (text: string, offset: number) => Awaitable<string[] | null>;

const IDENT_TAIL = /[A-Za-z_$][\w$]*$|$/;

export class DereferenceMonitor implements Monitor {
  readonly kind = 'dereference';
  readonly stats = emptyStats();
  /** dot offset -> members (null: no constraint there) */
  private readonly members = new Answers<string[]>(this.stats);
  private readonly dotted = new Map<number, string[]>();

  constructor(
    private readonly prefix: string,
    private readonly suffix: string,
    private readonly oracle: MemberOracle,
    private readonly masks: TokenMasks,
  ) {}

  prepare(state: DecodeState): Promise<unknown> | undefined {
    const site = memberSite(this.prefix + state.text);
    if (!site || this.members.get(site.dot) !== undefined) return undefined;
    return this.lookup(this.prefix + state.text, site.dot);
  }

  allowed(state: DecodeState): Uint32Array | null {
    const text = this.prefix + state.text;
    const site = memberSite(text);
    if (site) {
      const names = this.members.get(site.dot);
      if (!names || !names.some((n) => n.startsWith(site.ident))) return null;
      this.stats.maskedSteps++;
      const mask = this.masks.allowed(names, site.ident);
      // A finished member (`issue.maximum`) may be followed by a token opening the next access (`.toString`);
      // that mask lets any non-identifier byte through, so in the strict pass after such a token was rejected the
      // token must also spell a legal member of the new receiver (both masks apply: their intersection).
      if (state.strict && isReceiverEnd(text, text.length)) {
        const dotted = this.dottedMask(text, this.members.get(text.length) ?? null);
        if (dotted) return intersect(mask, dotted);
      }
      return mask;
    }
    // Strict pass after a rejected `.xyz` token: constrain every token that starts with a dot.
    if (state.strict && isReceiverEnd(text, text.length)) {
      const dotted = this.dottedMask(text, this.members.get(text.length) ?? null);
      if (dotted) {
        this.stats.maskedSteps++;
        return dotted;
      }
    }
    return null;
  }

  /** The rest of the member when only one legal member starts with what is typed (fast-forward). */
  forced(state: DecodeState): string | null {
    const site = memberSite(this.prefix + state.text);
    const names = site && this.members.get(site.dot);
    return names ? onlyContinuation(names, site.ident) : null;
  }

  /** A suggestion never ends halfway through a member: finish the only legal one, or cut back to before it. */
  settle(text: string): { append: string } | { cut: number } | null {
    const site = memberSite(this.prefix + text);
    const names = site && this.members.get(site.dot);
    return names ? settleName(names, site.ident, text.length) : null;
  }

  /**
   * A sampled token that opens a member access inside itself (`.length` after `acc`) must spell a legal member.
   * Checked after sampling, so the oracle is asked only when the model actually chose such a token.
   */
  reject(token: number, bytes: Uint8Array, state: DecodeState): boolean | Promise<boolean> {
    // Any token that starts a member access inside itself is judged, not only `.ident`: `.#base`, `.(` or `..` after
    // a receiver spell no member either (the e2e tests saw `.#` slip through after `first.owner`). A dot followed by
    // whitespace is left alone: the member comes in a later token, where the site logic constrains it.
    if (bytes.length < 2 || bytes[0] !== 0x2e || isSpace(bytes[1]!)) return false;
    const text = this.prefix + state.text;
    // (Inside an unfinished `expr.ide`, process() already masked dot tokens; after a finished member such as
    // `acc.balance`, `.toFixed` is a new access on it and is checked here like any other.)
    if (!isReceiverEnd(text, text.length)) return false;
    const judge = (names: string[] | null) => {
      const allowed = this.dottedMask(text, names);
      return allowed !== null && !isAllowed(allowed, token);
    };
    const known = this.members.get(text.length);
    return known !== undefined ? judge(known) : this.lookup(text + '.', text.length).then(judge);
  }

  /** Tokens spelling `.member...` legally after `text`, plus every token not starting with a dot; null if no constraint. */
  private dottedMask(text: string, names: string[] | null): Uint32Array | null {
    if (!names) return null;
    let dotted = this.dotted.get(text.length);
    if (!dotted) this.dotted.set(text.length, (dotted = names.map((n) => '.' + n)));
    return this.masks.allowedOr(dotted, '', 0x2e);
  }

  private lookup(text: string, dot: number): Promise<string[] | null> {
    // The shadow document: everything up to the dot, the dot, then the rest of the file after the cursor. A `;`
    // after the dot keeps the next line from being read as the member (`keys.` + `if (x) ...` would parse as
    // `keys.if(x)`, and the checker then offers nothing); the position asked is still just after the dot.
    return this.members.ask(dot, () => this.oracle(text.slice(0, dot + 1) + ';' + this.suffix, dot + 1));
  }
}

function isSpace(b: number): boolean {
  return b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d;
}

/** Inside `expr.ident` at the end of the text: the dot's offset and the identifier typed after it. */
function memberSite(text: string): { dot: number; ident: string } | null {
  const ident = IDENT_TAIL.exec(text)![0];
  const dot = text.length - ident.length - 1;
  return dot >= 0 && text[dot] === '.' && isReceiverEnd(text, dot) ? { dot, ident } : null;
}

/**
 * Can the text before `at` end a receiver expression: an identifier, `)`, `]`, `!` (non-null), `?` (of `?.`), or a
 * string literal's closing quote (`" ".repeat`: an opening quote is inside a string, where the syntax gate keeps
 * the oracle out)? Whitespace and newlines before a dot are skipped: a chained call continues on the next line
 * (`promise\n  .then(...)`).
 */
function isReceiverEnd(text: string, at: number): boolean {
  let i = at - 1;
  while (i >= 0 && (text[i] === ' ' || text[i] === '\t' || text[i] === '\n' || text[i] === '\r')) i--;
  const c = text.charCodeAt(i);
  if (Number.isNaN(c)) return false;
  return isIdentifierByte(c) || c === 0x29 /* ) */ || c === 0x5d /* ] */ || c === 0x21 /* ! */ || c === 0x3f /* ? */ || c === 0x22 || c === 0x27 || c === 0x60;
}
