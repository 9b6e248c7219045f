/**
 * The dot-completion metrics (after DotPrompts, microsoft/monitors4codegen), each a pure function of a completion and
 * the task's truth, or of diagnostics:
 *
 *  - NIM, next-identifier match: the completion's first identifier is the truth's (the member after the dot);
 *  - exactLine: the completion equals the rest of the line, both trimmed;
 *  - ISM, identifier-sequence match: the identifiers of completion and truth as the TypeScript scanner reads them
 *    (so words inside strings and comments do not count), the length of their longest common prefix divided by the
 *    number of identifiers in the truth (0..1; 1 when the completion starts with every identifier of the truth);
 *  - compiles: the completed file has no diagnostic that the original lacked, comparing multisets of (code, message)
 *    so a diagnostic that only moved (same code and text, new position) is not counted as new;
 *  - invalidMember: one of the new diagnostics is TS2339 ("Property 'x' does not exist on type") or TS2551 (the same
 *    with "Did you mean") starting at the site, i.e. the completion named a member the receiver does not have.
 */
import ts from 'typescript';

const INVALID_MEMBER_CODES = new Set([2339, 2551]);

/** Identifiers in `text` in order, by the TypeScript scanner; keywords (`this`, `return`) are not identifiers. */
export function identifiers(text: string): string[] {
  const scanner = ts.createScanner(ts.ScriptTarget.Latest, /*skipTrivia*/ true, ts.LanguageVariant.Standard, text);
  const out: string[] = [];
  // Which `}` closes a template substitution (`${a}b` must not read `b` as an identifier): a stack of open braces.
  const braces: Array<'block' | 'template'> = [];
  for (let kind = scanner.scan(); kind !== ts.SyntaxKind.EndOfFileToken; kind = scanner.scan()) {
    // A `}` opened before the text began (a line that starts inside `${...}`) closes a substitution when a backtick
    // follows on the line; otherwise it closes a block.
    if (kind === ts.SyntaxKind.CloseBraceToken) {
      const opened = braces.pop() ?? (text.includes('`', scanner.getTokenEnd()) ? 'template' : 'block');
      if (opened === 'template') kind = scanner.reScanTemplateToken(false);
    }
    if (kind === ts.SyntaxKind.Identifier || kind === ts.SyntaxKind.PrivateIdentifier) out.push(scanner.getTokenText());
    else if (kind === ts.SyntaxKind.OpenBraceToken) braces.push('block');
    else if (kind === ts.SyntaxKind.TemplateHead || kind === ts.SyntaxKind.TemplateMiddle) braces.push('template');
  }
  return out;
}

export interface MatchMetrics {
  nim: boolean;
  exactLine: boolean;
  ism: number;
}

export function matchMetrics(completion: string, truth: string): MatchMetrics {
  const got = identifiers(completion);
  const want = identifiers(truth);
  let common = 0;
  while (common < got.length && common < want.length && got[common] === want[common]) common++;
  return {
    nim: want.length > 0 && got[0] === want[0],
    exactLine: completion.trim() === truth.trim(),
    ism: want.length ? common / want.length : completion.trim() === truth.trim() ? 1 : 0,
  };
}

export { diagnosticKey, newDiagnostics } from '../verify/diagnostics.js';

/** A new diagnostic says the member written at `siteOffset` (just after the dot) does not exist. */
export function invalidMember(added: readonly ts.Diagnostic[], siteOffset: number): boolean {
  return added.some((d) => INVALID_MEMBER_CODES.has(d.code) && d.start === siteOffset);
}

/** What one sample of one task scored. */
export interface SampleScore extends MatchMetrics {
  compiles: boolean;
  invalidMember: boolean;
}

export interface Rates {
  tasks: number;
  nim: number;
  exactLine: number;
  ism: number;
  compileRate: number;
  invalidMemberRate: number;
  /** Fraction of tasks where at least one of the k samples compiles (= compileRate for k = 1). */
  scoreAtK: number;
}

/**
 * Averages over tasks of the per-task averages over samples (so every task weighs the same whatever k is); score@k
 * counts a task when any sample compiles.
 */
export function rates(tasks: ReadonlyArray<readonly SampleScore[]>): Rates {
  const n = tasks.length;
  const mean = (f: (s: SampleScore) => number) => (n ? tasks.reduce((a, samples) => a + samples.reduce((b, s) => b + f(s), 0) / samples.length, 0) / n : 0);
  return {
    tasks: n,
    nim: round(mean((s) => +s.nim)),
    exactLine: round(mean((s) => +s.exactLine)),
    ism: round(mean((s) => s.ism)),
    compileRate: round(mean((s) => +s.compiles)),
    invalidMemberRate: round(mean((s) => +s.invalidMember)),
    scoreAtK: round(n ? tasks.filter((samples) => samples.some((s) => s.compiles)).length / n : 0),
  };
}

function round(x: number): number {
  return Math.round(x * 10000) / 10000;
}
