/**
 * The line-end monitor: a one-line suggestion may end only where its line parses together with the rest of the
 * file. When the model ends the line (a line break in 'line' mode, or end of sequence) and the document it would make
 * (post-processed as shown) has a syntax error at or after the cursor's line that the file without that line does
 * not have, the end is refused and the model goes on writing the line (`a.b` + ` &&` where the next line continues
 * the condition). A few refusals per suggestion at most: a line the model cannot fit ends anyway, and the checker
 * (engine/verify) then judges it.
 *
 * The judgement is injected (`fits`): the engine parses with the language's parser; this module only decides when to
 * ask and what to mask. Only sampled ends are judged; after a refusal, allowed() masks every ending token.
 */
import type { DecodeState } from '../decode/logits-processor.js';
import type { TextTokenizer } from '../tokenizer/types.js';
import { emptyStats, type Monitor } from './monitor.js';

/** Refusals per suggestion at most (each costs a parse of the document). */
const MAX_REFUSALS = 3;

/** The tokens that end a one-line suggestion (a line break, end of sequence, any special token), per tokenizer. */
export class EndingTokens {
  /** Every token allowed but those. */
  readonly withoutEnds: Uint32Array;
  private readonly ends: Uint8Array;

  constructor(tok: TextTokenizer) {
    this.ends = new Uint8Array(tok.vocabSize);
    this.withoutEnds = new Uint32Array(Math.ceil(tok.vocabSize / 32));
    for (let id = 0; id < tok.vocabSize; id++) {
      const end = tok.isSpecial(id) || tok.eosIds.includes(id) || tok.tokenBytes(id).includes(0x0a);
      if (end) this.ends[id] = 1;
      else this.withoutEnds[id >>> 5]! |= 1 << (id & 31);
    }
  }

  isEnd(id: number): boolean {
    return this.ends[id] === 1;
  }
}

export class LineEndMonitor implements Monitor {
  readonly kind = 'line-end';
  readonly stats = emptyStats();
  private refusals = 0;
  private refusedAt = -1;
  private readonly utf8 = new TextDecoder();

  /** `fits(text)`: whether the document with `text` (the generated text, as it would end) parses with its suffix. */
  constructor(
    private readonly fits: (text: string) => boolean,
    private readonly endings: EndingTokens,
  ) {}

  reject(token: number, bytes: Uint8Array, state: DecodeState): boolean {
    if (this.refusals >= MAX_REFUSALS || !this.endings.isEnd(token)) return false;
    const nl = bytes.indexOf(0x0a);
    const text = nl < 0 ? state.text : state.text + this.utf8.decode(bytes.subarray(0, nl));
    // a line break before anything is written is no end (the stop rule lets it through), nor is an empty answer
    if (text.trim() === '') return false;
    const t0 = performance.now();
    let ok = true;
    try {
      ok = this.fits(text);
    } catch (e) {
      this.stats.errors++;
      this.stats.lastError ??= e instanceof Error ? e.message : String(e);
    }
    this.stats.analysisMs += performance.now() - t0;
    if (ok) return false;
    this.refusals++;
    this.stats.triggers++;
    this.refusedAt = state.step;
    return true;
  }

  allowed(state: DecodeState): Uint32Array | null {
    if (!state.strict || this.refusedAt !== state.step) return null;
    this.stats.maskedSteps++;
    return this.endings.withoutEnds;
  }
}
