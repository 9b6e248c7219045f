/**
 * textDocument/inlineCompletion (LSP 3.18): the completion as ghost text at the cursor. When the editor shows a
 * selected item of its own completion widget (context.selectedCompletionInfo), the item must extend that selection
 * and replace its range, so the generated text is kept only if it starts with the selected text (and may not replace
 * anything after the cursor). Otherwise the item may replace closers after the cursor that it writes itself
 * (`console.log(|)` + `x);`: the range covers the `)`).
 *
 * Invoked (not typed), up to three items, best first: the clean candidates the checker found (engine/verify), so an
 * editor can cycle through them; the shown suggestion alone when there is no checker or nothing else was clean.
 * Typed requests look for one clean suggestion only: alternatives cost decode time the typist waits for.
 */
import type { CancellationToken, InlineCompletionList, InlineCompletionParams } from 'vscode-languageserver';
import type { TextDocuments } from 'vscode-languageserver';
import type { TextDocument } from 'vscode-languageserver-textdocument';
import type { CompletionRunner } from './completion-runner.js';

const MAX_ITEMS = 3;

export async function inlineCompletion(documents: TextDocuments<TextDocument>, runner: CompletionRunner, params: InlineCompletionParams, token: CancellationToken): Promise<InlineCompletionList | null> {
  const doc = documents.get(params.textDocument.uri);
  if (!doc) return null;
  const selected = params.context.selectedCompletionInfo;
  const automatic = params.context.triggerKind === 2; /* Automatic */
  // typed: one suggestion, as fast as the check allows; invoked (the user asks, or cycles): up to three
  const out = await runner.complete(doc, params.position, token, { automatic, replace: !selected, candidates: automatic ? 1 : MAX_ITEMS });
  if (!out || out.result.text === '') return { items: [] };
  const first = { text: out.result.text, replace: out.replace };
  // the shown text first (a typed-through answer is the rest of the last one), then the other clean candidates
  const candidates = [first, ...(out.result.candidates ?? []).filter((c) => c.text !== first.text || c.replace !== first.replace)].filter((c) => c.text !== '').slice(0, MAX_ITEMS);
  if (selected) {
    const typed = doc.getText(selected.range);
    const items = candidates.map((c) => typed + c.text).filter((text) => text.startsWith(selected.text));
    return { items: items.map((insertText) => ({ insertText, range: selected.range })) };
  }
  return { items: candidates.map((c) => ({ insertText: c.text, range: { start: params.position, end: doc.positionAt(out.offset + c.replace) } })) };
}
