/**
 * textDocument/inlineCompletion (LSP 3.18): the completion as ghost text at the cursor. When the editor shows a
 * selected item of its own completion widget (context.selectedCompletionInfo), the item must extend that selection
 * and replace its range, so the generated text is kept only if it starts with the selected text (and may not replace
 * anything after the cursor). Otherwise the item may replace closers after the cursor that it writes itself
 * (`console.log(|)` + `x);`: the range covers the `)`).
 */
import type { CancellationToken, InlineCompletionList, InlineCompletionParams } from 'vscode-languageserver';
import type { TextDocuments } from 'vscode-languageserver';
import type { TextDocument } from 'vscode-languageserver-textdocument';
import type { CompletionRunner } from './completion-runner.js';

export async function inlineCompletion(documents: TextDocuments<TextDocument>, runner: CompletionRunner, params: InlineCompletionParams, token: CancellationToken): Promise<InlineCompletionList | null> {
  const doc = documents.get(params.textDocument.uri);
  if (!doc) return null;
  const selected = params.context.selectedCompletionInfo;
  const out = await runner.complete(doc, params.position, token, { automatic: params.context.triggerKind === 2 /* Automatic */, replace: !selected });
  if (!out || out.result.text === '') return { items: [] };
  if (selected) {
    const typed = doc.getText(selected.range);
    const text = typed + out.result.text;
    if (!text.startsWith(selected.text)) return { items: [] };
    return { items: [{ insertText: text, range: selected.range }] };
  }
  return { items: [{ insertText: out.result.text, range: { start: params.position, end: doc.positionAt(out.offset + out.replace) } }] };
}
