/**
 * Where a completion ends, judged on the generated text after each token. The rules, in order:
 *  - stop strings: the text is cut before the first occurrence of any;
 *  - 'line': the completion is the rest of the cursor's line: cut at the first newline that follows some
 *    non-whitespace generated text (a leading newline is kept so a completion at the end of `{` can start a line);
 *  - 'block': the completion may run over several lines while they stay inside the cursor's block. The base is the
 *    cursor line's indentation. A later line indented deeper continues; a line at or above the base ends the
 *    completion before its newline, except a closing-bracket line at exactly the base that closes a bracket the
 *    completion itself opened (`if (x) {` ... `}`), which is kept and ends the completion after it;
 *  - 'none': only max tokens, EOS and stop strings end it.
 * In 'line' and 'block' mode a loop at the text's end (repetition.ts) also ends it, cut back to before the loop.
 */
import { repetitionCut } from './repetition.js';

export type StopMode = 'line' | 'block' | 'none';

export interface StopOptions {
  mode: StopMode;
  stopStrings?: string[];
  /** The cursor's line up to the cursor: its indentation is the block's base. */
  linePrefix?: string;
}

export interface StopDecision {
  reason: 'stop-string' | 'line' | 'block' | 'repetition';
  /** Length of the text to keep. */
  cut: number;
}

export class StopRules {
  private readonly baseIndent: number;

  constructor(private readonly o: StopOptions) {
    this.baseIndent = indentOf(o.linePrefix ?? '');
  }

  /** The decision for the text generated so far, or null to go on. */
  check(text: string): StopDecision | null {
    let best: StopDecision | null = null;
    for (const s of this.o.stopStrings ?? []) {
      const i = s ? text.indexOf(s) : -1;
      if (i >= 0 && (!best || i < best.cut)) best = { reason: 'stop-string', cut: i };
    }
    const structural = this.o.mode === 'line' ? lineEnd(text) : this.o.mode === 'block' ? this.blockEnd(text) : null;
    if (structural !== null && (!best || structural < best.cut)) best = { reason: this.o.mode as 'line' | 'block', cut: structural };
    if (best || this.o.mode === 'none') return best;
    const loop = repetitionCut(text);
    return loop === null ? null : { reason: 'repetition', cut: loop };
  }

  private blockEnd(text: string): number | null {
    let depth = 0; // brackets opened by the completion and not yet closed
    let start = 0;
    for (let lineNo = 0; ; lineNo++) {
      const nl = text.indexOf('\n', start);
      const line = nl < 0 ? text.slice(start) : text.slice(start, nl);
      if (lineNo > 0) {
        const body = line.trimStart();
        if (body !== '') {
          const indent = line.length - body.length;
          if (indent <= this.baseIndent) {
            const closes = /^[}\])]/.test(body) && depth > 0 && indent === this.baseIndent;
            if (!closes) return start - 1; // before the newline that began this line
            if (nl >= 0) return nl; // keep the closing line, end after it
            return null; // the closing line is still being written
          }
        } else if (nl < 0) return null; // only indentation so far: undecided
      }
      depth = Math.max(0, depth + bracketDelta(line));
      if (nl < 0) return null;
      start = nl + 1;
    }
  }
}

function lineEnd(text: string): number | null {
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) if (text.slice(0, i).trim() !== '') return i;
  return null;
}

function indentOf(line: string): number {
  return line.length - line.trimStart().length;
}

/** Net brackets opened on a line, ignoring those inside simple string literals. */
function bracketDelta(line: string): number {
  let d = 0;
  let quote: string | null = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quote) {
      if (c === '\\') i++;
      else if (c === quote) quote = null;
    } else if (c === '"' || c === "'" || c === '`') quote = c;
    else if (c === '{' || c === '(' || c === '[') d++;
    else if (c === '}' || c === ')' || c === ']') d--;
  }
  return d;
}
