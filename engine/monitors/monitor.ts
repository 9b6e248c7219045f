/**
 * A monitor (after "Guiding Language Models of Code with Global Context using Monitors", NeurIPS 2023) watches the
 * code being generated. At a trigger point where static analysis knows the legal continuations (after `obj.`,
 * inside a call, after `case`...), it asks analysis for them once, then masks the model's logits at each step so
 * only tokens that lead to a legal continuation can be emitted, narrowing as text is emitted, until the construct
 * ends. Outside its constructs a monitor costs nothing and changes nothing.
 *
 * Monitors are logits processors (engine/decode/logits-processor.ts) with counters the engine reports.
 */
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
}

export interface Monitor extends LogitsProcessor {
  readonly kind: string;
  readonly stats: MonitorStats;
}

export function emptyStats(): MonitorStats {
  return { triggers: 0, maskedSteps: 0, analysisMs: 0, errors: 0 };
}

/**
 * Asks analysis a question for a monitor, once: times it, counts an answer as a trigger, and turns a failure into
 * "no constraint" (counted in errors) so analysis can never stop decoding.
 */
export function askOracle<T>(stats: MonitorStats, question: () => T | null): T | null {
  const t0 = performance.now();
  let answer: T | null = null;
  try {
    answer = question();
  } catch {
    stats.errors++;
  }
  stats.analysisMs += performance.now() - t0;
  if (answer) stats.triggers++;
  return answer;
}
