/**
 * textDocument/completion, for clients without inline completion (Neovim, Emacs): the generated text as one item
 * whose textEdit inserts it at the cursor.
 */
import { CompletionItemKind, InsertTextFormat, type CancellationToken, type CompletionList, type CompletionParams, type TextDocuments } from 'vscode-languageserver';
import type { TextDocument } from 'vscode-languageserver-textdocument';
import type { CompletionRunner } from './completion-runner.js';

export async function completion(documents: TextDocuments<TextDocument>, runner: CompletionRunner, params: CompletionParams, token: CancellationToken): Promise<CompletionList> {
  const doc = documents.get(params.textDocument.uri);
  if (!doc) return { isIncomplete: false, items: [] };
  const out = await runner.complete(doc, params.position, token);
  if (!out || out.result.text.trim() === '') return { isIncomplete: true, items: [] };
  const text = out.result.text;
  return {
    // incomplete: typing further asks again (the model's answer depends on every character)
    isIncomplete: true,
    items: [
      {
        label: text.split('\n')[0]!.trim().slice(0, 80) || text.trim().slice(0, 80),
        kind: CompletionItemKind.Text,
        detail: 'mgd',
        insertTextFormat: InsertTextFormat.PlainText,
        // the range may cover closers after the cursor that the text writes itself (`foo(|)` + `x);`)
        textEdit: { range: { start: params.position, end: doc.positionAt(out.offset + out.replace) }, newText: text },
        sortText: '0',
        filterText: doc.getText({ start: { line: params.position.line, character: 0 }, end: params.position }).split(/[^\w$]/).pop() + text,
      },
    ],
  };
}
