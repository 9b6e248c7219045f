/**
 * The callable monitor: `(` may follow a complete name (a variable, or a member after a dot) only if the checker says
 * its type has call signatures (construct signatures after `new`). `c.radius(` where `radius` is a number is the
 * TS2349 "not callable" this prevents; property or method is the oracle's answer, never a guess from the name.
 *
 * Sample-then-verify (LogitsProcessor.reject): asking the checker for every name the text ends in would cost a
 * query per step, and most names are not followed by `(`. So the monitor only asks when the sampled token opens a
 * call: its bytes are identifier characters (the end of the name), optional spaces, then `(`. The verdict is cached
 * per callee; a name known not to be callable masks the call-opening tokens from then on. Type arguments (`f<T>(`)
 * are left alone: `<` is also less-than.
 */
import type { DecodeState } from '../decode/logits-processor.js';
import type { Awaitable } from '../analysis/oracle.js';
import type { TextTokenizer } from '../tokenizer/types.js';
import { Answers, emptyStats, type Monitor } from './monitor.js';

/**
 * Whether the name ending just before `offset` of `text` may be called; null when the checker has no opinion
 * (not an expression, any, the untyped Function...).
 */
export type CallableOracle = (text: string, offset: number) => Awaitable<boolean | null>;

const IDENT = /[\w$]/;

/** Per token: how many identifier bytes it starts with before optional spaces and a `(` (-1: it opens no call). */
export class CallOpeners {
  readonly identBytes: Int16Array;
  /** Tokens that open a call right away (`(`, ` (`, `()`, `();`): allowed only after a callable name. */
  readonly notOpening: Uint32Array;
  /** Tokens that neither open a call nor finish a name and then open one (`ius(`). */
  readonly noneOpening: Uint32Array;

  constructor(tok: TextTokenizer) {
    this.identBytes = new Int16Array(tok.vocabSize).fill(-1);
    const words = Math.ceil(tok.vocabSize / 32);
    this.notOpening = new Uint32Array(words).fill(0xffffffff);
    this.noneOpening = new Uint32Array(words).fill(0xffffffff);
    for (let id = 0; id < tok.vocabSize; id++) {
      const b = tok.tokenBytes(id);
      let i = 0;
      while (i < b.length && IDENT.test(String.fromCharCode(b[i]!)) && b[i]! < 0x80) i++;
      let j = i;
      while (j < b.length && b[j] === 0x20) j++;
      if (j >= b.length || b[j] !== 0x28) continue;
      this.identBytes[id] = i;
      const bit = ~(1 << (id & 31));
      this.noneOpening[id >>> 5]! &= bit;
      if (i === 0) this.notOpening[id >>> 5]! &= bit;
    }
  }
}

export class CallableMonitor implements Monitor {
  readonly kind = 'callable';
  readonly stats = emptyStats();
  private readonly verdicts = new Answers<boolean>(this.stats);
  /** The step at which this monitor rejected a token: its strict pass forbids every call opener. */
  private rejectedAt = -1;

  constructor(
    private readonly prefix: string,
    private readonly suffix: string,
    private readonly oracle: CallableOracle,
    private readonly openers: CallOpeners,
  ) {}

  allowed(state: DecodeState): Uint32Array | null {
    if (state.strict && this.rejectedAt === state.step) {
      this.stats.maskedSteps++;
      return this.openers.noneOpening;
    }
    const text = this.prefix + state.text;
    if (!endsInName(text) || this.verdicts.get(text.length) !== false) return null;
    this.stats.maskedSteps++;
    return this.openers.notOpening;
  }

  reject(token: number, bytes: Uint8Array, state: DecodeState): boolean | Promise<boolean> {
    const n = this.openers.identBytes[token]!;
    if (n < 0) return false;
    const callee = this.prefix + state.text + new TextDecoder().decode(bytes.subarray(0, n));
    if (!endsInName(callee)) return false;
    const known = this.verdicts.get(callee.length);
    const judge = (callable: boolean | null) => {
      if (callable !== false) return false;
      this.rejectedAt = state.step;
      return true;
    };
    if (known !== undefined) return judge(known);
    // the callee closed as a statement, then the rest of the document: its type does not depend on what follows
    return this.verdicts.ask(callee.length, () => this.oracle(callee + ';' + this.suffix, callee.length)).then((callable) => {
      if (callable === false) this.stats.triggers++; // (Answers counts only answers that are truthy)
      return judge(callable);
    });
  }
}

/** Whether `text` ends in an identifier that is not a keyword-like construct the oracle would not answer for. */
function endsInName(text: string): boolean {
  return text.length > 0 && IDENT.test(text[text.length - 1]!) && !/(?:^|[^\w$])\d[\w$]*$/.test(text);
}
