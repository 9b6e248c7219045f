/**
 * A small model that loses its way loops: `error ?? errors ?? errors ?? …`, `a || b || b || b …`, `${x} ${x} ${x} …`.
 * Left alone it spends the whole token budget on the loop and ends mid-word at the limit, which no checker can mend.
 * This finds a loop at the end of the generated text and where to cut it: after the text before the loop and at
 * most one instance of what repeats, at a point where an expression can end.
 *
 * A loop is a periodic tail: the text ends with some unit repeated. What counts as one is strict, since code does
 * repeat itself on purpose (`[0, 0, 0]`, a `// -----` rule, indentation): the unit must hold a name character; a unit
 * with a letter (a name, a call) must repeat 3 times in a row, and one with only digits 16 times (a table of numbers
 * is code, a run of the same name is not); and the loop must be at least 24 characters long either way.
 */

/** The longest unit looked for, in characters (longer loops are rare and cost more to find). */
const MAX_PERIOD = 64;
const MIN_LOOP_CHARS = 24;
const MIN_REPEATS = 3;
const MIN_REPEATS_NUMERIC = 16;

/** Where to cut a looping text (its length to keep), or null when its end does not loop. */
export function repetitionCut(text: string): number | null {
  const n = text.length;
  for (let p = 1; p <= MAX_PERIOD && 3 * p <= n; p++) {
    // the periodic tail for period p: text[j] === text[j + p] for every j from `start` on
    let j = n - 1 - p;
    while (j >= 0 && text[j] === text[j + p]) j--;
    const start = j + 1;
    const loop = n - start;
    // (this runs after every token: the unit is looked at only once the tail is long enough to be a loop)
    if (loop < MIN_REPEATS * p || loop < MIN_LOOP_CHARS) continue;
    const unit = text.slice(n - p);
    if (!/[\w$]/.test(unit)) continue;
    if (!/[A-Za-z_$]/.test(unit) && loop < MIN_REPEATS_NUMERIC * p) continue;
    return cutIn(text, start, p);
  }
  return null;
}

/**
 * The cut: first its phase, a point in `(start, start + p]` (one turn of the loop) at an end of a name, a closer or a
 * quote that an operator, a separator, a closer or a space follows; of those, the one where the fewest brackets are
 * left open, the later on a tie. The loop's start is found by comparing characters, so it may reach a few characters
 * into the text before the loop by chance (`internalActions, customElements, customElements`, where the `s` matches):
 * a cut less than half a turn past the start would keep no instance of what repeats, and goes one turn on. Without a
 * point of that kind (a loop of punctuation around a name), the loop goes entirely.
 */
function cutIn(text: string, start: number, p: number): number {
  let best = -1;
  let bestDepth = Infinity;
  let depth = bracketDepth(text.slice(0, start + 1));
  for (let c = start + 1; c <= start + p; c++) {
    if (c > start + 1) depth += bracketDelta(text[c - 1]!);
    if (!endsExpression(text, c) || !continuesAfterEnd(text[c] ?? ' ')) continue;
    if (depth <= bestDepth) {
      best = c;
      bestDepth = depth;
    }
  }
  if (best < 0) return start;
  return 2 * (best - start) < p ? best + p : best;
}

/** Whether text[c - 1] can end an expression: a name, a closer, or a quote that closes (one after a space, an
 * operator or an opener opens a string). */
function endsExpression(text: string, c: number): boolean {
  const ch = text[c - 1]!;
  if (/[\w$)\]}]/.test(ch)) return true;
  return /["'`]/.test(ch) && c >= 2 && !/[\s,([{=+\-*/%|&?:!<>]/.test(text[c - 2]!);
}

function continuesAfterEnd(c: string): boolean {
  return /[\s,;)\]}|&?+\-*/%=<>!:^]/.test(c);
}

/** Brackets opened minus closed, strings not told apart (the loop's turns are compared with each other only). */
function bracketDepth(s: string): number {
  let d = 0;
  for (const c of s) d += bracketDelta(c);
  return d;
}

function bracketDelta(c: string): number {
  return c === '(' || c === '[' || c === '{' ? 1 : c === ')' || c === ']' || c === '}' ? -1 : 0;
}
