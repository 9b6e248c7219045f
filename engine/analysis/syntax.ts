/**
 * Syntax for every language we have a tree-sitter grammar for: where in the code a position is.
 *
 * Monitors need two answers before they ask a (slow) type oracle anything: is this position code at all (not a
 * string, comment, template text or regex, where monitors stay off), and what kind of site is it (member access,
 * call arguments, switch case, new-expression, import specifier). Tree-sitter answers both for TypeScript/TSX,
 * JavaScript, Python, Go, Rust and Java, recovering from syntax errors (a half-written file is the normal case).
 *
 * A SyntaxDocument keeps its tree and re-parses incrementally: successive shadow documents during decoding differ
 * by the few characters generated at the cursor, so each update is one edit (common prefix and suffix kept).
 * Offsets are JavaScript string indices (UTF-16), as node tree-sitter reports them.
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import type Parser from 'tree-sitter';
import { diffRange, positionAt } from './text-edit.js';

export type SyntaxLanguage = 'typescript' | 'tsx' | 'javascript' | 'python' | 'go' | 'rust' | 'java';
export type SyntaxContext = 'code' | 'string' | 'comment' | 'template' | 'regex';
export type SyntaxSite = 'member' | 'call-arguments' | 'switch-case' | 'new' | 'import-specifier';

export interface Classification {
  context: SyntaxContext;
  /** The innermost site the position is in (null: none of the monitored kinds). */
  site: SyntaxSite | null;
}

const EXTENSIONS: Record<string, SyntaxLanguage> = {
  '.ts': 'typescript', '.mts': 'typescript', '.cts': 'typescript',
  '.tsx': 'tsx',
  '.js': 'javascript', '.jsx': 'javascript', '.mjs': 'javascript', '.cjs': 'javascript',
  '.py': 'python', '.pyi': 'python',
  '.go': 'go',
  '.rs': 'rust',
  '.java': 'java',
};
const LANGUAGE_IDS: Record<string, SyntaxLanguage> = {
  typescript: 'typescript', typescriptreact: 'tsx', javascript: 'javascript', javascriptreact: 'javascript',
  python: 'python', go: 'go', rust: 'rust', java: 'java',
};

/** The grammar for a file, from its LSP languageId if given, else its extension; null if we have none. */
export function syntaxLanguageOf(file: string | undefined, languageId?: string): SyntaxLanguage | null {
  if (languageId && LANGUAGE_IDS[languageId]) return LANGUAGE_IDS[languageId]!;
  if (!file) return null;
  return EXTENSIONS[path.extname(file).toLowerCase()] ?? null;
}

// Node types, across the grammars, of the regions where monitors stay off, and of code inside them.
const STRING = new Set([
  'string', 'string_fragment', 'string_content', 'string_start', 'string_end', 'string_literal', 'raw_string_literal',
  'interpreted_string_literal', 'character_literal', 'char_literal', 'rune_literal', 'escape_sequence', 'text_block',
  'multiline_string_fragment', 'jsx_text', 'string_value',
]);
const TEMPLATE = new Set(['template_string']);
const COMMENT = new Set(['comment', 'line_comment', 'block_comment', 'doc_comment', 'html_comment']);
const REGEX = new Set(['regex', 'regex_pattern', 'regex_flags']);
const CODE_IN_TEXT = new Set(['template_substitution', 'interpolation', 'format_expression']);

const MEMBER = new Set(['member_expression', 'attribute', 'field_expression', 'selector_expression', 'field_access', 'method_invocation', 'scoped_identifier', 'scoped_type_identifier', 'qualified_type', 'nested_type_identifier']);
const ARGUMENTS = new Set(['arguments', 'argument_list']);
const SWITCH_CASE = new Set(['switch_case', 'case_clause', 'expression_case', 'type_case', 'switch_label', 'case_pattern', 'match_pattern']);
const NEW = new Set(['new_expression', 'object_creation_expression']);
const IMPORT = new Set(['import_specifier', 'named_imports', 'import_from_statement', 'use_declaration', 'use_list', 'import_declaration', 'import_spec', 'import_statement']);

const require = createRequire(import.meta.url);
const parsers = new Map<SyntaxLanguage, Parser | null>();

/** One parser per language, loaded on first use; null (and a reason thrown once) if the grammar cannot load. */
function parserFor(language: SyntaxLanguage): Parser {
  let parser = parsers.get(language);
  if (parser) return parser;
  if (parser === null) throw new Error(`the tree-sitter grammar for ${language} could not be loaded`);
  try {
    const ParserClass = require('tree-sitter') as typeof Parser;
    parser = new ParserClass();
    parser.setLanguage(grammar(language));
  } catch (e) {
    parsers.set(language, null);
    throw new Error(`the tree-sitter grammar for ${language} could not be loaded: ${(e as Error).message.split('\n')[0]}`);
  }
  parsers.set(language, parser);
  return parser;
}

function grammar(language: SyntaxLanguage): Parser.Language {
  switch (language) {
    case 'typescript':
      return require('tree-sitter-typescript').typescript;
    case 'tsx':
      return require('tree-sitter-typescript').tsx;
    case 'javascript':
      return require('tree-sitter-javascript');
    case 'python':
      return require('tree-sitter-python');
    case 'go':
      return require('tree-sitter-go');
    case 'rust':
      return require('tree-sitter-rust');
    case 'java':
      return require('tree-sitter-java');
  }
}

/** A one-off parse (indexing files that are not being edited). Throws if the grammar cannot load. */
export function parseOnce(language: SyntaxLanguage, text: string): Parser.Tree {
  return parserFor(language).parse(text);
}

/** A document's syntax tree, kept across edits. */
export class SyntaxDocument {
  private text = '';
  private tree: Parser.Tree | null = null;

  constructor(readonly language: SyntaxLanguage) {
    parserFor(language); // fail here, once, if the grammar cannot load
  }

  /** Makes `text` the current text, re-parsing incrementally from the previous one. */
  update(text: string): void {
    if (this.tree && text === this.text) return;
    const parser = parserFor(this.language);
    if (this.tree) {
      const old = this.text;
      const { start, oldEnd, newEnd } = diffRange(old, text);
      this.tree.edit({
        startIndex: start,
        oldEndIndex: oldEnd,
        newEndIndex: newEnd,
        startPosition: pointAt(old, start),
        oldEndPosition: pointAt(old, oldEnd),
        newEndPosition: pointAt(text, newEnd),
      });
    }
    this.tree = parser.parse(text, this.tree ?? undefined);
    this.text = text;
  }

  /** Where the position `offset` (between characters) of the current text is. */
  classify(offset: number): Classification {
    if (!this.tree) throw new Error('SyntaxDocument.classify before update');
    const at = Math.max(0, Math.min(offset, this.text.length));
    // The character before the cursor decides the region: after `"abc` we are in a string, after `x.` in code.
    const leaf = this.tree.rootNode.descendantForIndex(Math.max(0, at - 1), Math.max(0, at - 1));
    return { context: this.context(leaf, at), site: siteOf(leaf, this.text, at) };
  }

  /** Shorthand: is `offset` in code (monitors may act), after making `text` current. */
  isCode(text: string, offset: number): boolean {
    this.update(text);
    return this.classify(offset).context === 'code';
  }

  private context(leaf: Parser.SyntaxNode, at: number): SyntaxContext {
    for (let n: Parser.SyntaxNode | null = leaf; n; n = n.parent) {
      if (CODE_IN_TEXT.has(n.type)) {
        // `${` and `}` themselves belong to the template; inside the braces is code
        if (at > n.startIndex && at <= n.endIndex) return 'code';
      }
      if (COMMENT.has(n.type)) return 'comment';
      if (REGEX.has(n.type)) return 'regex';
      if (TEMPLATE.has(n.type)) return at > n.startIndex ? 'template' : 'code';
      if (STRING.has(n.type)) {
        if (n.parent && TEMPLATE.has(n.parent.type)) return 'template';
        // after a string's closing quote is code again
        return at >= n.endIndex && n.type !== 'string_fragment' && n.type !== 'string_content' && closes(n) ? 'code' : 'string';
      }
      if (n.type === 'ERROR' && unclosedQuote(n, at)) return 'string';
    }
    return 'code';
  }
}

/** Does this string-like node end with its closing delimiter (not cut off by an error)? */
function closes(n: Parser.SyntaxNode): boolean {
  return n.childCount === 0 || !n.lastChild!.isMissing;
}

/**
 * Error recovery can leave an unterminated string as loose quote tokens in an ERROR node (Python's `"""doc.`):
 * an odd count of quote tokens before the cursor, or a string start without its end, means we are inside it.
 */
function unclosedQuote(error: Parser.SyntaxNode, at: number): boolean {
  let open = 0;
  const visit = (n: Parser.SyntaxNode): void => {
    if (n.startIndex >= at) return;
    if (n.childCount === 0) {
      if (n.type === 'string_start') open++;
      else if (n.type === 'string_end') open = Math.max(0, open - 1);
      else if (n.type === '"' || n.type === "'" || n.type === '`' || n.type === '"""') open = open ? 0 : 1;
      return;
    }
    for (const c of n.children) visit(c);
  };
  visit(error);
  return open > 0;
}

function siteOf(leaf: Parser.SyntaxNode, text: string, at: number): SyntaxSite | null {
  // `recv.` or `recv.par`: the identifier being typed, then the accessor before it
  let i = at;
  while (i > 0 && /[\p{L}\p{N}_$]/u.test(text[i - 1]!)) i--;
  if (text[i - 1] === '.' || (text[i - 1] === ':' && text[i - 2] === ':') || (text[i - 1] === '>' && text[i - 2] === '-')) {
    if (!/\d/.test(text[i - 2] ?? '')) return 'member';
  }
  for (let n: Parser.SyntaxNode | null = leaf; n; n = n.parent) {
    if (NEW.has(n.type)) return 'new';
    if (IMPORT.has(n.type)) return 'import-specifier';
    if (SWITCH_CASE.has(n.type)) return 'switch-case';
    // inside the parentheses, not on them
    if (ARGUMENTS.has(n.type) && at > n.startIndex && at < n.endIndex) return 'call-arguments';
    if (MEMBER.has(n.type) && n.parent && ARGUMENTS.has(n.parent.type)) continue;
  }
  return null;
}

/** Row and column (UTF-16 units) of an offset: tree-sitter's edit needs both. */
function pointAt(text: string, offset: number): Parser.Point {
  const p = positionAt(text, offset);
  return { row: p.line, column: p.character };
}
