/**
 * A monitor (after "Guiding Language Models of Code with Global Context using Monitors", NeurIPS 2023) watches the
 * code being generated. At a trigger point where static analysis knows the legal continuations (after `obj.`,
 * inside a call, after `case`...), it asks analysis for them once, then masks the model's logits at each step so
 * only tokens that lead to a legal continuation can be emitted, narrowing as text is emitted, until the construct
 * ends. Outside its constructs a monitor costs nothing and changes nothing.
 *
 * Monitors are logits processors (engine/decode/logits-processor.ts) with counters the engine reports.
 */
import type { Awaitable } from '../analysis/oracle.js';
import type { LogitsProcessor } from '../decode/logits-processor.js';

export interface MonitorStats {
  /** Trigger points where analysis returned legal continuations. */
  triggers: number;
  /** Steps whose logits this monitor masked. */
  maskedSteps: number;
  /** Milliseconds spent in analysis (oracle queries). */
  analysisMs: number;
  /** Analysis failures (crashed or timed-out oracle): decoding went on unmonitored. */
  errors: number;
  /** The first failure's message, for the log and JSON. */
  lastError?: string;
}

export interface Monitor extends LogitsProcessor {
  readonly kind: string;
  readonly stats: MonitorStats;
}

export function emptyStats(): MonitorStats {
  return { triggers: 0, maskedSteps: 0, analysisMs: 0, errors: 0 };
}

/**
 * A monitor's answers from analysis, one per site (keyed by the site's offset in the text, or by whatever else tells
 * its sites apart), asked once per request.
 * Asking may take time (a language server is another process), so the decode loop awaits `ask` in the monitor's
 * prepare()/reject() and process() reads `get` synchronously. Timing, trigger and error counts are kept here, and a
 * failure (crash, timeout) becomes "no constraint" so analysis can never stop decoding.
 */
export class Answers<T, K = number> {
  private readonly known = new Map<K, T | null>();

  constructor(private readonly stats: MonitorStats) {}

  /** The answer at `key` (null: no constraint), or undefined if not asked yet. */
  get(key: K): T | null | undefined {
    return this.known.get(key);
  }

  async ask(key: K, question: () => Awaitable<T | null>): Promise<T | null> {
    if (this.known.has(key)) return this.known.get(key)!;
    const t0 = performance.now();
    let answer: T | null = null;
    try {
      answer = await question();
    } catch (e) {
      this.stats.errors++;
      this.stats.lastError ??= e instanceof Error ? e.message : String(e);
    }
    this.stats.analysisMs += performance.now() - t0;
    if (answer) this.stats.triggers++;
    this.known.set(key, answer);
    return answer;
  }
}

/**
 * Fast-forward for a name constraint: the rest of the only legal name starting with `typed`, or null when the model
 * still has a choice (several names match, or `typed` is already a complete name and may end here).
 */
export function onlyContinuation(names: readonly string[], typed: string): string | null {
  let only: string | null = null;
  for (const n of names) {
    if (!n.startsWith(typed)) continue;
    if (n === typed || only !== null) return null;
    only = n;
  }
  return only === null ? null : only.slice(typed.length);
}

/**
 * settle() for a name constraint: a suggestion that ends while the name `typed` is being written (the last `typed`
 * characters of the generated text, or fewer when the name began before the cursor) ends on a complete name:
 * the rest of the only legal one is appended, or the text is cut back to before the name. null: it is complete,
 * nothing of it is written yet and several names are legal, or the constraint did not hold there (no legal name
 * starts so).
 */
export function settleName(names: readonly string[], typed: string, generated: number): { append: string } | { cut: number } | null {
  if (names.includes(typed) || !names.some((n) => n.startsWith(typed))) return null;
  const rest = onlyContinuation(names, typed);
  if (rest !== null) return { append: rest };
  // (nothing of the name written yet: nothing to cut; what precedes it is another construct's business)
  return typed === '' ? null : { cut: Math.max(0, generated - typed.length) };
}
