/**
 * The dereference monitor: after `receiver.`, only members of the receiver's type.
 *
 * Its state is derived from the text each step, so it needs no bookkeeping across tokens:
 *  - the text (document before the cursor + generated text) ends inside `expr.ident` (possibly `expr.` with an
 *    empty ident): the member being written must be a prefix of, or complete, one of the receiver's members, and
 *    once complete may only be followed by a non-identifier character;
 *  - otherwise, if the sampled token starts with `.` and an identifier (Qwen2 spells `obj.length` as
 *    `obj` `.length`), the receiver's members are looked up for `text + "."`; an illegal token is rejected and, in
 *    the loop's strict pass, tokens starting with `.` must spell a legal member (others stay allowed).
 * Member lists come from the type oracle, once per dot position per request. No answer from the oracle (not a member
 * access, a string or comment, an unknown type, or an oracle failure) means no constraint.
 */
import type { DecodeState } from '../decode/logits-processor.js';
import { applyMask, isAllowed, isIdentifierByte, type TokenMasks } from '../decode/mask/token-mask.js';
import type { TextTokenizer } from '../tokenizer/types.js';
import { askOracle, emptyStats, type Monitor } from './monitor.js';

/** Answers "members after the dot at this offset of this text", or null. */
export type MemberOracle = (text: string, offset: number) => string[] | null;

const IDENT_TAIL = /[A-Za-z_$][\w$]*$|$/;

export class DereferenceMonitor implements Monitor {
  readonly kind = 'dereference';
  readonly stats = emptyStats();
  /** dot offset -> members (null: no constraint there) */
  private readonly members = new Map<number, string[] | null>();
  private readonly dotted = new Map<number, string[]>();

  constructor(
    private readonly prefix: string,
    private readonly suffix: string,
    private readonly oracle: MemberOracle,
    private readonly masks: TokenMasks,
    private readonly tok: TextTokenizer,
  ) {}

  process(logits: Float32Array, state: DecodeState): boolean {
    const text = this.prefix + state.text;
    // Inside `expr.ident`?
    const ident = IDENT_TAIL.exec(text)![0];
    const dot = text.length - ident.length - 1;
    if (dot >= 0 && text[dot] === '.' && isReceiverEnd(text, dot)) {
      const names = this.lookup(text, dot);
      if (names && names.some((n) => n.startsWith(ident))) {
        applyMask(logits, this.masks.allowed(names, ident));
        this.stats.maskedSteps++;
        return true;
      }
      return false;
    }
    // Strict pass after a rejected `.xyz` token: constrain every token that starts with a dot.
    if (state.strict && isReceiverEnd(text, text.length)) {
      const allowed = this.dottedMask(text);
      if (allowed) {
        applyMask(logits, allowed);
        this.stats.maskedSteps++;
        return true;
      }
    }
    return false;
  }

  /**
   * A sampled token that opens a member access inside itself (`.length` after `acc`) must spell a legal member.
   * Checked after sampling, so the oracle is asked only when the model actually chose such a token.
   */
  reject(token: number, bytes: Uint8Array, state: DecodeState): boolean {
    if (bytes.length < 2 || bytes[0] !== 0x2e || !isIdentifierByte(bytes[1]!)) return false;
    const text = this.prefix + state.text;
    // (Inside an unfinished `expr.ide`, process() already masked dot tokens; after a finished member such as
    // `acc.balance`, `.toFixed` is a new access on it and is checked here like any other.)
    if (!isReceiverEnd(text, text.length)) return false;
    const allowed = this.dottedMask(text);
    return allowed !== null && !isAllowed(allowed, token);
  }

  /** Tokens spelling `.member...` legally after `text`, plus every token not starting with a dot; null if no constraint. */
  private dottedMask(text: string): Uint32Array | null {
    const names = this.lookup(text + '.', text.length);
    if (!names) return null;
    let dotted = this.dotted.get(text.length);
    if (!dotted) this.dotted.set(text.length, (dotted = names.map((n) => '.' + n)));
    return this.masks.allowedOr(dotted, '', 0x2e);
  }

  private lookup(text: string, dot: number): string[] | null {
    if (this.members.has(dot)) return this.members.get(dot)!;
    // The shadow document: everything up to the dot, the dot, then the rest of the file after the cursor.
    const names = askOracle(this.stats, () => this.oracle(text.slice(0, dot + 1) + this.suffix, dot + 1));
    this.members.set(dot, names);
    return names;
  }
}

/** Can the character before `at` end a receiver expression (identifier, `)`, `]`, `>` of a generic call... )? */
function isReceiverEnd(text: string, at: number): boolean {
  const c = text.charCodeAt(at - 1);
  if (Number.isNaN(c)) return false;
  return isIdentifierByte(c) || c === 0x29 /* ) */ || c === 0x5d /* ] */ || c === 0x21 /* ! non-null */ || c === 0x3f /* ?. */;
}
