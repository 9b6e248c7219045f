/**
 * The post-processing chain after the model, the same for every door (CLI, LSP, HTTP) and for the eval: drop the
 * completion's end that the cursor line's rest already has, then balance the brackets it opened. What comes out is
 * what a user is shown; the checker (engine/verify) judges that text, not the model's raw output.
 *
 * Each filter is a pure function in its own file (suffix-overlap.ts, balance-brackets.ts); this file only chains them.
 */
import { balanceBrackets } from './balance-brackets.js';
import { trimSuffixOverlap } from './suffix-overlap.js';

/** What the editor shows: the text, and how many characters after the cursor (on its line) it replaces. */
export interface Shown {
  text: string;
  replace: number;
}

/** Stop reasons of a completion that ended on its own (the others: the token limit, masked out, cancelled). */
const FINISHED = new Set(['eos', 'line', 'block', 'stop-string', 'repetition']);

export interface PostProcessInput {
  prefix: string;
  suffix: string;
  filePath?: string;
  stopReason: string;
  /** Whether the answer may replace closers after the cursor (an inline item that extends a selection may not). */
  replace: boolean;
}

export function postProcess(raw: string, o: PostProcessInput): Shown {
  const nl = o.suffix.indexOf('\n');
  const lineRest = nl < 0 ? o.suffix : o.suffix.slice(0, nl);
  const trimmed = trimSuffixOverlap(raw, lineRest);
  // a completion that runs into the text after the cursor ended there, whatever stopped the model
  const finished = FINISHED.has(o.stopReason) || trimmed !== raw;
  return balanceBrackets(trimmed, { prefix: o.prefix, suffix: o.suffix, filePath: o.filePath, finished, replace: o.replace });
}
