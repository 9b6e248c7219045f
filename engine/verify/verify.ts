/**
 * Check before showing: a suggestion is judged by the checker on the document it would make, and when it adds a
 * diagnostic the next candidates are tried, within a time budget:
 *
 *   1. the suggestion itself, then repaired (`repair`: what it left open on the cursor's line closed);
 *   2. the suggestion cut back to a sensible point (the end of a name or of a closed bracket), longest first, its
 *      brackets closed as post-processing closes them: the first clean one is kept as the fallback. Prefixes cost
 *      checks only, so they come before the alternatives, whose decoding may take the rest of the budget;
 *   3. the model's alternatives at its branch points (the steps where the runner-up came closest), re-decoded from
 *      there: the prompt and the tokens before the branch are in the KV cache, so each costs only its own steps.
 *      A clean alternative is shown before the fallback (it is a whole suggestion, not a cut one).
 * Each dirty alternative is also tried repaired before the next one.
 *
 * The best clean one is shown; else the original. The search is the engine's business (it owns decoding); this
 * module is the policy, with decoding and checking passed in, so it can be tested without a model. A checker that
 * throws makes the answer unverified, never an error; the budget is checked before each step of the search and a
 * step is not started when the last one's duration would overrun it.
 */

/** A suggestion as shown: its text and how many characters after the cursor it replaces. */
export interface Candidate {
  text: string;
  replace: number;
  /** Why the text ends where it does (the decode's stop reason; the caller's bookkeeping, not judged here). */
  stopReason?: string;
}

export type VerifyStatus =
  /** The suggestion adds no diagnostic. */
  | 'clean'
  /** It did; closing what it left open on its line (a repair, no decoding) made it clean. */
  | 'repaired'
  /** It did; an alternative from a branch point that adds none is shown. */
  | 'alternative'
  /** It did; a clean prefix of it is shown. */
  | 'prefix'
  /** Nothing clean was found within the budget: the original is shown. */
  | 'dirty'
  /** The checker failed or the budget ended before the suggestion was judged: shown as it is. */
  | 'unverified'
  /** No checker for this file (or verification turned off). */
  | 'off';

export interface VerifyReport {
  status: VerifyStatus;
  /** Candidates made (the suggestion, alternatives decoded, prefixes). */
  candidates: number;
  /** Candidates judged by the checker. */
  checked: number;
  /** Which judged candidate is shown (0: the suggestion), -1 when none was clean. */
  chosen: number;
  /** Time spent verifying, decoding of alternatives included. */
  ms: number;
  /** Diagnostics the suggestion itself added (before any repair). */
  added: number;
  /** The budget ended the search before it ran out of candidates. */
  exhausted: boolean;
  error?: string;
}

export interface VerifySearch {
  budgetMs: number;
  /** How many distinct clean candidates to collect (the LSP door shows up to three). */
  want: number;
  /** Diagnostics the candidate adds to the document (codes), empty when clean; throws when the checker fails. */
  added(c: Candidate): Promise<number[]> | number[];
  /**
   * The next alternative from a branch point, or null when none is left or it could not finish within `ms` (its
   * decoding is abandoned then).
   */
  alternative(ms: number): Promise<Candidate | null>;
  /** Shorter versions of the suggestion that end at sensible points, longest first. */
  prefixes(): Candidate[];
  /** The candidate with what it leaves open on its line closed, or null when nothing is (no decode: one check). */
  repair?(c: Candidate): Candidate | null;
  /** How many alternatives to decode at most (they cost model steps; prefixes only checks). */
  maxAlternatives: number;
  signal?: AbortSignal;
}

export interface Verified {
  /** What to show: the first clean candidate, else the suggestion. */
  shown: Candidate;
  /** Distinct clean candidates, best first (shown first when it is clean). */
  clean: Candidate[];
  report: VerifyReport;
}

/** The part of the budget alternatives may use while nothing clean is found: the rest is the prefixes'. */
const ALTERNATIVES_SHARE = 0.6;

/** Candidates that differ only in a trailing `;` or blanks are one candidate to a user cycling through them. */
function candidateKey(c: Candidate): string {
  return `${c.replace}\u0000${c.text.replace(/[\s;]+$/, '')}`;
}

export async function verifySuggestion(first: Candidate, s: VerifySearch): Promise<Verified> {
  const t0 = performance.now();
  const report: VerifyReport = { status: 'unverified', candidates: 1, checked: 0, chosen: -1, ms: 0, added: 0, exhausted: false };
  const clean: Candidate[] = [];
  const seen = new Set<string>();
  // the longest clean prefix, when the suggestion is dirty: shown only if no alternative is clean
  let fallback: { candidate: Candidate; checked: number } | null = null;
  let lastCheck = 0;
  // whether there is time for one more step, judged by the last check's cost (the first also computes the
  // baselines and warms the parser, so it is no estimate for the rest)
  const time = () => performance.now() - t0 + lastCheck <= s.budgetMs && !s.signal?.aborted;
  // alternatives may use the whole budget only when the suggestion is clean (more candidates wanted); otherwise
  // part is kept for the prefixes, which cost a check each
  const altEnd = () => s.budgetMs * (clean.length || fallback ? 1 : ALTERNATIVES_SHARE);
  const judge = async (c: Candidate): Promise<boolean> => {
    const t = performance.now();
    const codes = await s.added(c);
    lastCheck = performance.now() - t;
    report.checked++;
    return codes.length === 0;
  };
  const done = (shown: Candidate, status: VerifyStatus): Verified => {
    report.status = status;
    report.ms = Math.round((performance.now() - t0) * 10) / 10;
    return { shown, clean, report };
  };
  const consider = async (c: Candidate, repaired = false): Promise<boolean> => {
    const key = candidateKey(c);
    if (seen.has(key) || c.text.trim() === '') return false;
    seen.add(key);
    if (!(await judge(c))) {
      const r = repaired ? null : s.repair?.(c);
      return r && time() ? consider(r, true) : false;
    }
    if (report.chosen < 0) report.chosen = report.checked - 1;
    clean.push(c);
    return true;
  };

  try {
    const t = performance.now();
    const codes = await s.added(first);
    lastCheck = performance.now() - t;
    report.checked = 1;
    report.added = codes.length;
    seen.add(candidateKey(first));
    if (codes.length === 0) {
      report.chosen = 0;
      clean.push(first);
      if (s.want <= 1) return done(first, 'clean');
    }
    let status: VerifyStatus | null = codes.length === 0 ? 'clean' : null;
    const fixed = codes.length ? s.repair?.(first) : null;
    if (fixed && time()) {
      report.candidates++;
      if (await consider(fixed, true)) status = 'repaired';
    }
    // Nothing clean yet: first the longest clean prefix, a fallback that costs checks only, so that a slow decode of
    // alternatives cannot leave the original to be shown; then alternatives, any clean one shown before it.
    if (!status) {
      for (const p of s.prefixes()) {
        if (!time()) {
          report.exhausted = true;
          break;
        }
        const key = candidateKey(p);
        if (seen.has(key) || p.text.trim() === '') continue;
        seen.add(key);
        report.candidates++;
        let ok = await judge(p);
        // a prefix that leaves its line open (a template's `${`) is tried closed, as any dirty candidate is
        const fixed = ok ? p : s.repair?.(p);
        if (!ok && fixed && time()) ok = await judge(fixed);
        if (ok) {
          fallback = { candidate: fixed ?? p, checked: report.checked - 1 };
          break;
        }
      }
    }
    for (let n = 0; n < s.maxAlternatives && clean.length < s.want; n++) {
      if (!time()) {
        report.exhausted = true;
        break;
      }
      const left = altEnd() - (performance.now() - t0);
      if (left <= lastCheck) break;
      const alt = await s.alternative(left);
      if (!alt) break;
      report.candidates++;
      if (!time()) {
        report.exhausted = true;
        break;
      }
      if ((await consider(alt)) && !status) status = 'alternative';
      if (status === 'repaired' && clean.length >= s.want) break;
    }
    if (fallback && clean.length < s.want) {
      if (report.chosen < 0) report.chosen = fallback.checked;
      clean.push(fallback.candidate);
      status ??= 'prefix';
    }
    return done(clean[0] ?? first, status ?? 'dirty');
  } catch (e) {
    report.error = e instanceof Error ? e.message : String(e);
    // what was judged clean before the failure still counts
    return done(clean[0] ?? first, clean.length ? (report.chosen === 0 ? 'clean' : 'alternative') : 'unverified');
  }
}

/**
 * Where a suggestion may be cut and still read as finished: after a name (not inside one) or after a closing
 * bracket or quote, never after an operator, a comma or an opener (which promise more). Offsets into `text`, longest
 * first, the whole text excluded.
 */
export function sensibleCuts(text: string): number[] {
  const cuts: number[] = [];
  for (let i = text.length - 1; i >= 1; i--) {
    const last = text[i - 1]!;
    const next = text[i]!;
    const name = /[\w$]/.test(last);
    if ((name && !/[\w$]/.test(next)) || /[)\]}'"`]/.test(last)) cuts.push(i);
  }
  return cuts;
}
