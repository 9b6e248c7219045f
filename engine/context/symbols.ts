/**
 * What a file defines and imports, from its tree-sitter tree, in any language we have a grammar for: the raw
 * material of repository context. A definition keeps its *signature* (the declaration up to its body: what a caller
 * needs, a fraction of the tokens) and its doc comment; a class, interface, struct or trait keeps the signatures of
 * its members too, so its outline reads like a .d.ts.
 */
import type Parser from 'tree-sitter';
import { parseOnce, type SyntaxLanguage } from '../analysis/syntax.js';

export interface Definition {
  name: string;
  kind: string;
  /** The declaration without its body (members' signatures for containers), doc comment first. */
  signature: string;
  /** 0-based line of the declaration. */
  line: number;
  exported: boolean;
}

export interface FileSymbols {
  definitions: Definition[];
  /** Module specifiers imported (`./model.js`, `os.path`, `crate::x`), in order. */
  imports: string[];
}

/** Per language: definition node types, which are containers (their members are listed), member node types. */
interface LanguageTable {
  definitions: Record<string, string>;
  containers: Set<string>;
  members: Set<string>;
  imports: (node: Parser.SyntaxNode) => string | null;
}

const TS_TABLE: LanguageTable = {
  definitions: {
    function_declaration: 'function', generator_function_declaration: 'function', class_declaration: 'class', abstract_class_declaration: 'class',
    interface_declaration: 'interface', type_alias_declaration: 'type', enum_declaration: 'enum', lexical_declaration: 'const',
  },
  containers: new Set(['class_declaration', 'abstract_class_declaration', 'interface_declaration']),
  members: new Set(['method_definition', 'public_field_definition', 'method_signature', 'property_signature', 'abstract_method_signature', 'field_definition']),
  imports: (n) => (n.type === 'import_statement' || n.type === 'export_statement' ? (n.childForFieldName('source')?.text.slice(1, -1) ?? null) : null),
};

const TABLES: Record<SyntaxLanguage, LanguageTable> = {
  typescript: TS_TABLE,
  tsx: TS_TABLE,
  javascript: TS_TABLE,
  python: {
    definitions: { function_definition: 'function', class_definition: 'class' },
    containers: new Set(['class_definition']),
    members: new Set(['function_definition']),
    imports: (n) => (n.type === 'import_from_statement' ? (n.childForFieldName('module_name')?.text ?? null) : n.type === 'import_statement' ? (n.namedChildren[0]?.text ?? null) : null),
  },
  go: {
    definitions: { function_declaration: 'function', method_declaration: 'method', type_declaration: 'type' },
    containers: new Set(),
    members: new Set(),
    imports: (n) => (n.type === 'import_spec' ? (n.childForFieldName('path')?.text.slice(1, -1) ?? null) : null),
  },
  rust: {
    definitions: { function_item: 'function', struct_item: 'struct', enum_item: 'enum', trait_item: 'trait', impl_item: 'impl', type_item: 'type' },
    containers: new Set(['trait_item', 'impl_item']),
    members: new Set(['function_item', 'function_signature_item']),
    imports: (n) => (n.type === 'use_declaration' ? (n.childForFieldName('argument')?.text ?? null) : null),
  },
  java: {
    definitions: { class_declaration: 'class', interface_declaration: 'interface', enum_declaration: 'enum', record_declaration: 'record' },
    containers: new Set(['class_declaration', 'interface_declaration']),
    members: new Set(['method_declaration', 'constructor_declaration', 'field_declaration']),
    imports: (n) => (n.type === 'import_declaration' ? n.text.replace(/^import\s+(static\s+)?/, '').replace(/;\s*$/, '') : null),
  },
};

const MAX_SIGNATURE = 600;
const BODY_FIELDS = ['body'];

export function extractSymbols(language: SyntaxLanguage, text: string): FileSymbols {
  const table = TABLES[language];
  const tree = parseOnce(language, text);
  const definitions: Definition[] = [];
  const imports: string[] = [];
  const visit = (node: Parser.SyntaxNode, exported: boolean, depth: number) => {
    for (const child of node.namedChildren) {
      const spec = table.imports(child);
      if (spec) imports.push(spec);
      if (child.type === 'export_statement') {
        visit(child, true, depth);
        continue;
      }
      // Go: `import ( ... )` and Python's decorated definitions hold their payload one level down
      if (child.type === 'import_declaration' && language === 'go') visit(child, exported, depth);
      if (child.type === 'import_spec_list') visit(child, exported, depth);
      if (child.type === 'decorated_definition') {
        visit(child, exported, depth);
        continue;
      }
      const kind = table.definitions[child.type];
      if (!kind) continue;
      const def = definitionOf(table, language, child, kind, exported);
      if (def) definitions.push(def);
    }
  };
  visit(tree.rootNode, false, 0);
  return { definitions, imports };
}

function definitionOf(table: LanguageTable, language: SyntaxLanguage, node: Parser.SyntaxNode, kind: string, exported: boolean): Definition | null {
  let name = node.childForFieldName('name')?.text;
  if (!name && node.type === 'lexical_declaration') {
    // `export const f = (x) => ...`: the declarator's name; plain constants are definitions too (config objects)
    name = node.namedChildren.find((c) => c.type === 'variable_declarator')?.childForFieldName('name')?.text;
  }
  if (!name && node.type === 'type_declaration') name = node.namedChildren[0]?.childForFieldName('name')?.text;
  if (!name && node.type === 'impl_item') name = node.childForFieldName('type')?.text;
  if (!name) return null;
  let signature: string;
  if (table.containers.has(node.type)) {
    const body = node.childForFieldName('body');
    const head = body ? node.text.slice(0, body.startIndex - node.startIndex).trimEnd() : node.text;
    const members = (body?.namedChildren ?? [])
      .filter((m) => table.members.has(m.type) || m.type === 'decorated_definition' || (language === 'python' && m.type === 'expression_statement' && /^[A-Za-z_]\w*\s*:/.test(m.text)))
      .map((m) => '  ' + clip(headOf(m.type === 'decorated_definition' ? (m.namedChildren.at(-1) ?? m) : m), 200).replace(/\n\s*/g, ' '));
    const [open, close] = language === 'python' ? [':', ''] : [' {', '}'];
    signature = `${head.replace(/:$/, '')}${open}\n${members.join('\n')}${close ? '\n' + close : ''}`;
  } else if (kind === 'enum' || kind === 'type' || kind === 'struct') {
    signature = node.text; // short, and the members are the point
  } else {
    signature = headOf(node);
  }
  if (exported && (language === 'typescript' || language === 'tsx' || language === 'javascript')) signature = `export ${signature}`;
  const doc = docCommentBefore(node);
  return { name, kind, signature: clip((doc ? doc + '\n' : '') + signature, MAX_SIGNATURE), line: node.startPosition.row, exported: exported || language !== 'typescript' && language !== 'tsx' && language !== 'javascript' };
}

/** The declaration up to its body (a function's `{ ... }`, a class's members), or all of it for short declarations. */
function headOf(node: Parser.SyntaxNode): string {
  for (const field of BODY_FIELDS) {
    const body = node.childForFieldName(field);
    if (body) return node.text.slice(0, body.startIndex - node.startIndex).trimEnd().replace(/[:{]$/, '').trimEnd();
  }
  // `const f = (x: T): R => { ... }`: keep the arrow's head
  const arrow = node.descendantsOfType('arrow_function')[0];
  if (arrow) {
    const body = arrow.childForFieldName('body');
    if (body) return node.text.slice(0, body.startIndex - node.startIndex).trimEnd();
  }
  return node.text.trimEnd();
}

/** A `/** ... *\/`, `///` or `#` comment right above the node (no blank line between). */
function docCommentBefore(node: Parser.SyntaxNode): string | null {
  const target = node.parent?.type === 'export_statement' || node.parent?.type === 'decorated_definition' ? node.parent : node;
  const prev = target.previousNamedSibling;
  if (!prev || !/comment/.test(prev.type)) return null;
  if (target.startPosition.row - prev.endPosition.row > 1) return null;
  return clip(prev.text, 300);
}

function clip(text: string, max: number): string {
  return text.length <= max ? text : text.slice(0, max) + ' …';
}
