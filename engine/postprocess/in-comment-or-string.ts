/**
 * Whether the cursor sits in a comment or a string/template literal, where automatic completions stay off. For
 * JavaScript/TypeScript the TypeScript scanner decides (exact on well-formed code, robust on partial code); other
 * languages answer false until tree-sitter classification lands.
 */
import ts from 'typescript';

export function inCommentOrString(prefix: string, filePath: string | undefined): boolean {
  if (!filePath || !/\.(ts|tsx|mts|cts|js|jsx|mjs|cjs)$/.test(filePath)) return false;
  // only the last few thousand characters matter, from a line start so the scanner starts in code
  const from = Math.max(0, prefix.lastIndexOf('\n', Math.max(0, prefix.length - 4000)));
  const text = prefix.slice(from);
  const scanner = ts.createScanner(ts.ScriptTarget.Latest, false, /x$/.test(filePath) ? ts.LanguageVariant.JSX : ts.LanguageVariant.Standard, text);
  // One entry per open `{`: true where it is a template's `${`, whose `}` continues the template. The scanner alone
  // would read the rest of `...${x} tail` as code, and the closing backtick as the start of a template.
  const braces: boolean[] = [];
  for (let kind = scanner.scan(); kind !== ts.SyntaxKind.EndOfFileToken; kind = scanner.scan()) {
    if (kind === ts.SyntaxKind.CloseBraceToken && braces.pop() === true) kind = scanner.reScanTemplateToken(false);
    if (kind === ts.SyntaxKind.OpenBraceToken) braces.push(false);
    else if ((kind === ts.SyntaxKind.TemplateHead || kind === ts.SyntaxKind.TemplateMiddle) && !scanner.isUnterminated()) braces.push(true);
    if (scanner.getTokenEnd() < text.length) continue;
    // the token that reaches the end of the text: an unterminated string, template or comment contains the cursor
    if (kind === ts.SyntaxKind.SingleLineCommentTrivia || kind === ts.SyntaxKind.MultiLineCommentTrivia) return !(kind === ts.SyntaxKind.MultiLineCommentTrivia && text.endsWith('*/'));
    if (
      kind === ts.SyntaxKind.StringLiteral ||
      kind === ts.SyntaxKind.NoSubstitutionTemplateLiteral ||
      kind === ts.SyntaxKind.TemplateHead ||
      kind === ts.SyntaxKind.TemplateMiddle ||
      kind === ts.SyntaxKind.TemplateTail
    )
      return scanner.isUnterminated();
    return false;
  }
  return false;
}
