/**
 * The TypeScript/JavaScript type oracle: the in-process LanguageService of typescript@6 (the last release with the
 * JavaScript API; 7.x is the native compiler) over a workspace.
 *
 * The workspace's tsconfig.json is found and parsed once; files are read from disk, versioned by mtime, so the
 * service stays warm and incremental across requests. The document being completed is a *shadow*: its text is
 * document-before-cursor + generated tokens (+ suffix), given per query, never written to disk.
 *
 * Analysis answers questions and never drives decoding: it returns names or null ("no opinion": not a member access,
 * inside a string or comment, or the type is unknown), and the monitor decides what to do with that.
 */
import fs from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { isLibraryFile, type CallShape, type CheckDiagnostic, type TypeLocation, type TypeOracle } from './oracle.js';

const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;

/**
 * Where only an expression may begin (an argument, an operand, a condition, the right side of `=`, after `return`),
 * not a statement or a declaration: TypeScript's list there still has every keyword (`continue`, `var`, `package`,
 * `as`), and the model takes them (`pipe(continue = true)`). Not after `{`, `;` or `:` (a block, a case clause, a
 * label may start a statement), nor in `for (` (`let`, `const`).
 */
const EXPRESSION_ONLY = /(?:[([,=+\-*/%!&|^~?>]|\s<|(?:^|[^\w$.])(?:return|await|typeof|throw|yield|void|delete|case|in|of|instanceof))\s*$/;
/** The keywords that may begin an expression (the rest begin statements or declarations, or nothing). */
const EXPRESSION_KEYWORDS = new Set(['async', 'await', 'class', 'delete', 'false', 'function', 'import', 'new', 'null', 'super', 'this', 'true', 'typeof', 'void', 'yield']);
const DEFAULT_OPTIONS: ts.CompilerOptions = {
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  allowJs: true,
  strict: true,
  skipLibCheck: true,
  noEmit: true,
};

export class TypeScriptOracle implements TypeOracle {
  readonly name = 'typescript';
  private readonly service: ts.LanguageService;
  private readonly options: ts.CompilerOptions;
  private readonly rootFiles: string[];
  private readonly shadows = new Map<string, { text: string; version: number }>();
  private readonly snapshots = new Map<string, { version: string; snapshot: ts.IScriptSnapshot }>();

  constructor(readonly workspace: string) {
    const configFile = ts.findConfigFile(workspace, ts.sys.fileExists, 'tsconfig.json');
    let parsed: ts.ParsedCommandLine | undefined;
    if (configFile && path.resolve(configFile).startsWith(path.resolve(workspace))) {
      parsed = ts.getParsedCommandLineOfConfigFile(configFile, {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: () => {} }) ?? undefined;
    }
    this.options = { ...(parsed?.options ?? DEFAULT_OPTIONS), noEmit: true };
    this.rootFiles = parsed?.fileNames ?? [];
    const host: ts.LanguageServiceHost = {
      getCompilationSettings: () => this.options,
      getScriptFileNames: () => [...new Set([...this.rootFiles, ...this.shadows.keys()])],
      getScriptVersion: (f) => {
        const shadow = this.shadows.get(f);
        if (shadow) return `shadow-${shadow.version}`;
        try {
          return String(fs.statSync(f).mtimeMs);
        } catch {
          return 'missing';
        }
      },
      getScriptSnapshot: (f) => {
        const shadow = this.shadows.get(f);
        if (shadow) return ts.ScriptSnapshot.fromString(shadow.text);
        // The service asks for every file's snapshot on each new program (each shadow edit): reading them all
        // again was most of a check's time on a 300-file workspace. The text is kept per (file, mtime).
        const version = host.getScriptVersion(f);
        const cached = this.snapshots.get(f);
        if (cached?.version === version) return cached.snapshot;
        const text = ts.sys.readFile(f);
        if (text === undefined) return undefined;
        const snapshot = ts.ScriptSnapshot.fromString(text);
        this.snapshots.set(f, { version, snapshot });
        return snapshot;
      },
      getCurrentDirectory: () => workspace,
      getDefaultLibFileName: (o) => ts.getDefaultLibFilePath(o),
      fileExists: (f) => this.shadows.has(f) || ts.sys.fileExists(f),
      readFile: (f, enc) => this.shadows.get(f)?.text ?? ts.sys.readFile(f, enc),
      readDirectory: ts.sys.readDirectory,
      directoryExists: ts.sys.directoryExists,
      getDirectories: ts.sys.getDirectories,
    };
    this.service = ts.createLanguageService(host, ts.createDocumentRegistry());
  }

  static handles(file: string): boolean {
    return /\.(ts|tsx|mts|cts|js|jsx|mjs|cjs)$/.test(file);
  }

  typeDefinitions(file: string, text: string, offset: number): TypeLocation[] | null {
    const abs = this.shadow(file, text);
    const defs = this.service.getTypeDefinitionAtPosition(abs, Math.max(0, offset - 1));
    const program = this.service.getProgram();
    if (!defs?.length || !program) return null;
    const out: TypeLocation[] = [];
    for (const d of defs) {
      const sf = program.getSourceFile(d.fileName);
      // the standard library's types (string, Array...) are the model's to know, not the repository's
      if (!sf || program.isSourceFileDefaultLibrary(sf) || isLibraryFile(d.fileName)) continue;
      out.push({ file: path.resolve(d.fileName), line: sf.getLineAndCharacterOfPosition(d.textSpan.start).line });
    }
    return out.length ? out : null;
  }

  /**
   * Members legal right after a `.` at `offset` in the shadow document `text` (offset is just past the dot), or
   * null when the position is not a member access the checker can type.
   */
  members(file: string, text: string, offset: number): string[] | null {
    const abs = this.shadow(file, text);
    const result = this.service.getCompletionsAtPosition(abs, offset, { triggerCharacter: '.', includeCompletionsWithInsertText: false });
    if (!result || !result.isMemberCompletion) return null;
    const names = result.entries.filter((e) => e.kind !== ts.ScriptElementKind.warning && IDENTIFIER.test(e.name) && !e.insertText).map((e) => e.name);
    return names.length ? [...new Set(names)].sort() : null;
  }

  /**
   * Names the checker would complete at `offset` (an identifier's start) whose entry passes `keep`, or null when
   * there is no completion list there (string, comment, no scope).
   */
  completions(file: string, text: string, offset: number, keep: (e: ts.CompletionEntry) => boolean): string[] | null {
    const abs = this.shadow(file, text);
    const result = this.service.getCompletionsAtPosition(abs, offset, { includeCompletionsWithInsertText: false });
    if (!result) return null;
    const names = result.entries.filter((e) => IDENTIFIER.test(e.name) && !e.insertText && keep(e)).map((e) => e.name);
    return names.length ? [...new Set(names)].sort() : null;
  }

  /**
   * The names that may start at `offset` (locals, parameters, imports, globals, keywords that can begin the
   * expression or type there): TypeScript's own completion list. Null where a new name may be declared (TypeScript's
   * isNewIdentifierLocation: a parameter, an object literal's key), in a member list, or where it has no list, with
   * one exception: a call's argument, where TypeScript allows a new name only because it may be an arrow function's
   * parameter (`xs.map(x => ...)`): there the names come with `arrowParams`, and a name not among them must be
   * followed by `=>`.
   */
  scopeNames(file: string, text: string, offset: number): { names: string[]; arrowParams: boolean } | null {
    const abs = this.shadow(file, text);
    const result = this.service.getCompletionsAtPosition(abs, offset, { includeCompletionsWithInsertText: false });
    if (!result || result.isMemberCompletion) return null;
    const arrowParams = result.isNewIdentifierLocation;
    if (arrowParams && !this.atArgumentStart(abs, offset)) return null;
    const before = text.slice(Math.max(0, offset - 64), offset);
    const expressionOnly = EXPRESSION_ONLY.test(before) && !/\bfor\s*\(\s*$/.test(before);
    const keywordOk = (e: ts.CompletionEntry) => !expressionOnly || e.kind !== ts.ScriptElementKind.keyword || EXPRESSION_KEYWORDS.has(e.name);
    const names = result.entries.filter((e) => IDENTIFIER.test(e.name) && !e.insertText && keywordOk(e)).map((e) => e.name);
    return names.length ? { names: [...new Set(names)].sort(), arrowParams } : null;
  }

  /** Whether `offset` is where an argument of a call or `new` begins (after its `(` or a `,` of its list). */
  private atArgumentStart(abs: string, offset: number): boolean {
    const source = this.service.getProgram()?.getSourceFile(abs);
    const m = source && /[(,](\s*)$/.exec(source.text.slice(Math.max(0, offset - 64), offset));
    if (!source || !m) return false;
    // just after the `(` or `,`: whitespace before the cursor can lie outside every node (`f(1, ` ends at the comma)
    const anchor = offset - m[1]!.length;
    const path = innermostPath(source, anchor);
    for (let i = path.length - 1; i >= 0; i--) {
      const n = path[i]!;
      if (!ts.isCallExpression(n) && !ts.isNewExpression(n)) continue;
      // a call that starts at or after the anchor is an argument (the next line's `g(...)` read into the open list
      // as its first argument: its leading trivia begins at the `(`), not the call whose list the anchor is in
      if (n.getStart(source) >= anchor) continue;
      const args = n.arguments;
      if (!args || anchor < args.pos) return false; // in the callee or its type arguments
      const inner = path[i + 1];
      if (inner === undefined) return true;
      return args.some((a) => a === inner) && inner.getStart(source) >= anchor;
    }
    return false;
  }

  /**
   * Values in scope at `offset` that `new` can construct: classes (imported ones resolved through their alias)
   * that are not abstract, and values whose type has construct signatures (Map, Date). Null outside any scope.
   */
  constructible(file: string, text: string, offset: number): string[] | null {
    const at = this.pathAt(file, text, offset);
    if (!at) return null;
    const { checker } = at;
    const node = at.path[at.path.length - 1]!;
    const names: string[] = [];
    for (const symbol of checker.getSymbolsInScope(node, ts.SymbolFlags.Value | ts.SymbolFlags.Alias)) {
      if (!IDENTIFIER.test(symbol.name)) continue;
      const target = symbol.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(symbol) : symbol;
      if (!(target.flags & ts.SymbolFlags.Value)) continue; // type-only (interfaces, type aliases)
      const decl = target.valueDeclaration ?? target.declarations?.[0];
      if (target.flags & ts.SymbolFlags.Class) {
        if (decl && ts.getCombinedModifierFlags(decl as ts.Declaration) & ts.ModifierFlags.Abstract) continue;
        names.push(symbol.name);
        continue;
      }
      if (!decl) continue;
      if (checker.getTypeOfSymbolAtLocation(target, decl).getConstructSignatures().length) names.push(symbol.name);
    }
    return names.length ? [...new Set(names)].sort() : null;
  }

  /**
   * After `case ` in a switch whose discriminant is an enum: the enum's name as written in scope (the dereference
   * monitor then constrains its members). Null when the switch is not over an enum.
   */
  switchEnum(file: string, text: string, offset: number): string[] | null {
    const at = this.pathAt(file, text, offset);
    if (!at) return null;
    const { checker } = at;
    const sw = at.path.filter(ts.isSwitchStatement).pop();
    if (!sw) return null;
    const type = checker.getTypeAtLocation(sw.expression);
    const parts = type.isUnion() ? type.types : [type];
    const enums = new Set<string>();
    for (const t of parts) {
      if (!(t.flags & ts.TypeFlags.EnumLike)) return null; // not purely an enum: no constraint
      const sym = t.symbol;
      const enumSym = sym && sym.flags & ts.SymbolFlags.EnumMember ? (sym as ts.Symbol & { parent?: ts.Symbol }).parent : sym;
      if (!enumSym) return null;
      enums.add(checker.symbolToString(enumSym, sw, ts.SymbolFlags.Value));
    }
    const names = [...enums].filter((n) => IDENTIFIER.test(n));
    return names.length ? names : null;
  }

  /**
   * Argument counts the call whose `(` ends just before `offset` accepts, over its overloads: fewest required and
   * most allowed (Infinity when one has a rest parameter). Null when no signature is known there.
   */
  callShape(file: string, text: string, offset: number): CallShape | null {
    const abs = this.shadow(file, text);
    const help = this.service.getSignatureHelpItems(abs, offset, undefined);
    if (!help || help.items.length === 0 || help.argumentIndex !== 0) return null;
    let minArgs = Infinity;
    let maxArgs = 0;
    for (const item of help.items) {
      // isRest is not set for every rest parameter (Math.max's `...values`): the display says it too
      const isRest = (p: ts.SignatureHelpParameter) => p.isRest || ts.displayPartsToString(p.displayParts).startsWith('...');
      const required = item.parameters.filter((p) => !p.isOptional && !isRest(p)).length;
      minArgs = Math.min(minArgs, required);
      maxArgs = Math.max(maxArgs, item.isVariadic || item.parameters.some(isRest) ? Infinity : item.parameters.length);
    }
    return { minArgs, maxArgs };
  }

  /**
   * Whether the name ending just before `offset` (a variable, or a member after a dot) may be called there: its type
   * has call signatures, or construct signatures when it is what `new` constructs. Null when the checker has no
   * opinion: not a value in expression position (a declaration's name, a type), or a type any call is legal on
   * (any, unknown to it, an unconstrained type parameter, the untyped `Function`).
   */
  callable(file: string, text: string, offset: number): boolean | null {
    const abs = this.shadow(file, text);
    const program = this.service.getProgram();
    const source = program?.getSourceFile(abs);
    if (!program || !source) return null;
    const name = identifierEndingAt(source, offset);
    if (!name) return null;
    const parent = name.parent;
    let callee: ts.Expression = name;
    if (ts.isPropertyAccessExpression(parent) && parent.name === name) callee = parent;
    else if ((parent as { name?: ts.Node }).name === name || ts.isTypeNode(parent) || ts.isQualifiedName(parent)) return null;
    const checker = program.getTypeChecker();
    const constructs = ts.isNewExpression(callee.parent) && callee.parent.expression === callee;
    let type = checker.getNonNullableType(checker.getTypeAtLocation(callee));
    if (type.flags & ts.TypeFlags.TypeParameter) {
      const constraint = checker.getBaseConstraintOfType(type);
      if (!constraint) return null;
      type = constraint;
    }
    const parts = type.isUnion() ? type.types : [type];
    let callableParts = 0;
    for (const t of parts) {
      if (t.flags & (ts.TypeFlags.Any | ts.TypeFlags.Unknown | ts.TypeFlags.TypeParameter)) return null;
      const symbol = checker.getApparentType(t).getSymbol();
      if (symbol && /^(Function|CallableFunction|NewableFunction)$/.test(symbol.getName())) return null;
      const signatures = constructs ? t.getConstructSignatures() : t.getCallSignatures();
      if (signatures.length) callableParts++;
    }
    return callableParts === parts.length;
  }

  /** Semantic and syntactic diagnostics of a shadow document (for tests and evaluation). */
  diagnostics(file: string, text: string): ts.Diagnostic[] {
    const abs = this.shadow(file, text);
    return [...this.service.getSyntacticDiagnostics(abs), ...this.service.getSemanticDiagnostics(abs)];
  }

  /** The errors of a shadow document, as the verifier compares them (TypeOracle.errors). */
  errors(file: string, text: string): CheckDiagnostic[] {
    return this.diagnostics(file, text)
      .filter((d) => d.category === ts.DiagnosticCategory.Error)
      .map((d) => ({ code: d.code, message: ts.flattenDiagnosticMessageText(d.messageText, ' ') }));
  }

  /** Sets the shadow text of `file` (a new version) and returns its absolute path. */
  private shadow(file: string, text: string): string {
    const abs = path.resolve(this.workspace, file);
    const prev = this.shadows.get(abs);
    this.shadows.set(abs, { text, version: (prev?.version ?? 0) + 1 });
    return abs;
  }

  /** The program, checker and innermost nodes containing `offset` of a shadow document (outermost first). */
  private pathAt(file: string, text: string, offset: number): { checker: ts.TypeChecker; path: ts.Node[] } | null {
    const abs = this.shadow(file, text);
    const program = this.service.getProgram();
    const source = program?.getSourceFile(abs);
    if (!program || !source) return null;
    return { checker: program.getTypeChecker(), path: innermostPath(source, offset) };
  }

  dispose(): void {
    this.service.dispose();
  }
}

/** The nodes containing `offset` (their leading trivia included), outermost first. */
function innermostPath(source: ts.SourceFile, offset: number): ts.Node[] {
  const nodes: ts.Node[] = [source];
  for (let found = true; found; ) {
    found = false;
    ts.forEachChild(nodes[nodes.length - 1]!, (child) => {
      if (!found && child.pos <= offset && offset <= child.end) {
        nodes.push(child);
        found = true;
      }
    });
  }
  return nodes;
}

/** The identifier token whose last character is just before `offset`, or null. */
function identifierEndingAt(source: ts.SourceFile, offset: number): ts.Identifier | null {
  let node: ts.Node = source;
  for (let found = true; found; ) {
    found = false;
    ts.forEachChild(node, (child) => {
      if (!found && child.getStart(source) < offset && offset <= child.end) {
        node = child;
        found = true;
      }
    });
  }
  return ts.isIdentifier(node) && node.end === offset ? node : null;
}
