/**
 * What a completion adds to a document, in the checker's words: the diagnostics of the completed document beyond
 * those it had without the completion, compared as multisets of (code, message) so that a diagnostic that only moved
 * (same code and text, new position) is not new. The verifier (verify.ts) and the evaluation judge by the same rule.
 */
import ts from 'typescript';
import type { CheckDiagnostic } from '../analysis/oracle.js';

/** A diagnostic as compared between documents: code and flattened message, no position. */
export function diagnosticKey(d: ts.Diagnostic | CheckDiagnostic): string {
  return `TS${d.code}: ${'messageText' in d ? ts.flattenDiagnosticMessageText(d.messageText, ' ') : d.message}`;
}

/** The diagnostics of `completed` beyond those of `original`, as multisets of diagnosticKey. */
export function newDiagnostics<D extends ts.Diagnostic | CheckDiagnostic>(original: readonly D[], completed: readonly D[]): D[] {
  const left = counts(original);
  const added: D[] = [];
  for (const d of completed) {
    const k = diagnosticKey(d);
    const n = left.get(k) ?? 0;
    if (n > 0) left.set(k, n - 1);
    else added.push(d);
  }
  return added;
}

/** The diagnostics both documents have (multiset intersection): what a candidate is excused only if both had it. */
export function commonDiagnostics<D extends ts.Diagnostic | CheckDiagnostic>(a: readonly D[], b: readonly D[]): D[] {
  const left = counts(b);
  return a.filter((d) => {
    const k = diagnosticKey(d);
    const n = left.get(k) ?? 0;
    if (n > 0) left.set(k, n - 1);
    return n > 0;
  });
}

function counts(ds: readonly (ts.Diagnostic | CheckDiagnostic)[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const d of ds) m.set(diagnosticKey(d), (m.get(diagnosticKey(d)) ?? 0) + 1);
  return m;
}

/**
 * The parser's diagnostics of `text` alone (TS1xxx): no program, no type checking, so a few milliseconds where a
 * full check costs a new program and checker (hundreds on a large workspace). The verifier asks this first: a
 * candidate that breaks the syntax is rejected without the full check. (`parseDiagnostics` is the parser's own list,
 * what the language service's syntactic diagnostics return for a TypeScript file; it is not in the public typings.)
 */
export function parseDiagnostics(fileName: string, text: string): CheckDiagnostic[] {
  return parserDiagnostics(fileName, text).map((d) => ({ code: d.code, message: ts.flattenDiagnosticMessageText(d.messageText, ' ') }));
}

function parserDiagnostics(fileName: string, text: string): ts.Diagnostic[] {
  const sf = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, false);
  return (sf as unknown as { parseDiagnostics?: ts.Diagnostic[] }).parseDiagnostics ?? [];
}

/** How many of the parser's diagnostics of `text` start at or after offset `from` (the cursor's line, say). */
export function syntaxErrorsFrom(fileName: string, text: string, from: number): number {
  return parserDiagnostics(fileName, text).filter((d) => (d.start ?? 0) >= from).length;
}

/** The kinds the evaluation groups new diagnostics by: what a monitor or the verifier would have to fix. */
export const DIAGNOSTIC_KINDS = ['syntax', 'arity', 'not-callable', 'unknown-name', 'member', 'argument-type', 'other'] as const;
export type DiagnosticKind = (typeof DIAGNOSTIC_KINDS)[number];

const KIND_OF_CODE = new Map<number, DiagnosticKind>([
  // a call's argument count: expected N, got M; no overload expects M; a spread where a fixed count is needed
  ...[2554, 2555, 2556, 2575].map((c) => [c, 'arity'] as const),
  // calling what has no call (or construct) signatures, or may be undefined
  ...[2348, 2349, 2351, 2721, 2722, 2723, 2774].map((c) => [c, 'not-callable'] as const),
  // a name that is not in scope (with or without a suggestion), a missing namespace, a shorthand with no value
  ...[2304, 2552, 2582, 2583, 2503, 18004].map((c) => [c, 'unknown-name'] as const),
  // a member the receiver does not have
  ...[2339, 2551].map((c) => [c, 'member'] as const),
  // an argument of the wrong type, no overload matching the arguments
  ...[2345, 2769].map((c) => [c, 'argument-type'] as const),
]);

/** TS1xxx are the parser's (syntax); the rest by code. */
export function diagnosticKind(code: number): DiagnosticKind {
  if (code >= 1000 && code < 2000) return 'syntax';
  return KIND_OF_CODE.get(code) ?? 'other';
}
