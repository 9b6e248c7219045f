/**
 * The analyses a completion request can use, by file: a tree-sitter document for the syntax (any language with a
 * grammar) and a type oracle (TypeScript's in-process service for TS/JS; a language server for the others). They
 * are kept warm across requests, per workspace and language, and disposed with the engine.
 *
 * Every oracle question first asks the syntax whether the position is code: inside strings, comments, template text
 * and regexes monitors stay off, and a language server is not bothered.
 */
import path from 'node:path';
import { endsInCode, knownSyntax } from '../postprocess/bracket-lexer.js';
import { defaultLanguageServers, typescriptNativeServer } from './language-servers.js';
import { LspOracle, type LanguageServerConfig } from './lsp-oracle.js';
import type { CallShape, TypeOracle } from './oracle.js';
import { SyntaxDocument, syntaxLanguageOf } from './syntax.js';
import { TypeScriptOracle } from './ts-oracle.js';

export interface AnalysesOptions {
  /**
   * Language servers by language, over the built-in ones (pyright for Python; gopls, rust-analyzer, jdtls, clangd
   * when on PATH). A `typescript` entry (e.g. TypeScript 7's `tsgo --lsp --stdio`) replaces the in-process service.
   */
  languageServers?: Record<string, LanguageServerConfig>;
  /**
   * The TypeScript/JavaScript oracle for members and calls: TypeScript 7's native language server (default, where
   * installed: same answers, about 5x faster) or typescript@6's in-process service. The in-process service answers
   * the new/import/case sites either way (created on the first such site).
   */
  typescript?: 'native' | 'in-process';
  /** Where degraded-mode messages go. */
  log?: (message: string) => void;
}

/** What a request may ask about its file. */
export interface FileAnalysis {
  /** Members and call shapes, asked only at positions the syntax says are code. */
  oracle: TypeOracle;
  /** For TS/JS files: the in-process TypeScript service (created on first use), for the new/import/case sites. */
  typescript: (() => TypeScriptOracle) | null;
  /** Whether `offset` of the shadow `text` is code (true where no grammar is known: the oracle decides). */
  isCode(text: string, offset: number): boolean;
}

const MAX_SYNTAX_DOCUMENTS = 32;

export class Analyses {
  private readonly servers: Record<string, LanguageServerConfig>;
  private readonly nativeTypeScript: LanguageServerConfig | null;
  private readonly oracles = new Map<string, TypeOracle>();
  private readonly syntax = new Map<string, SyntaxDocument | null>();
  private readonly log: (message: string) => void;

  constructor(o: AnalysesOptions = {}) {
    this.servers = { ...defaultLanguageServers(), ...o.languageServers };
    this.nativeTypeScript = o.typescript === 'in-process' || this.servers.typescript ? null : typescriptNativeServer();
    this.log = o.log ?? (() => {});
  }

  /** The language server configuration for a file, if one is configured for its language. */
  private serverFor(file: string, languageId?: string): [string, LanguageServerConfig] | null {
    const ext = path.extname(file).toLowerCase();
    for (const [language, config] of Object.entries(this.servers)) {
      if ((languageId && (language === languageId || config.languageId === languageId)) || config.extensions.includes(ext)) return [language, config];
    }
    return null;
  }

  /** Whether monitors can apply to this file at all (some oracle is known for it). */
  applies(file: string, languageId?: string): boolean {
    return TypeScriptOracle.handles(file) || this.serverFor(file, languageId) !== null;
  }

  /** The analyses for `file` in `workspace`, or null when no oracle is known or one cannot be created. */
  for(file: string, workspace: string, languageId?: string): FileAnalysis | null {
    const isTypeScript = TypeScriptOracle.handles(file);
    let server: [string, LanguageServerConfig] | null = null;
    if (isTypeScript) {
      if (this.servers.typescript) server = ['typescript', this.servers.typescript];
      else if (this.nativeTypeScript) server = ['typescript', this.nativeTypeScript];
    } else {
      server = this.serverFor(file, languageId);
      if (!server) return null;
    }
    const oracle = this.oracle(server ? `${server[0]}\0${workspace}` : `in-process\0${workspace}`, () =>
      server ? new LspOracle(workspace, server[1], this.log) : new TypeScriptOracle(workspace),
    );
    if (!oracle) return null;
    const syntax = this.syntaxFor(file, languageId);
    // Tree-sitter reads the whole shadow document, and a line the cursor leaves open can make it misread the point
    // (`${dict[issue.` followed by the next line's template: it sees template text). Where the bracket lexer knows
    // the language, the prefix alone has the last word when tree-sitter says no.
    const lexed = knownSyntax(file);
    const isCode = (text: string, offset: number) => !syntax || syntax.isCode(text, offset) || (lexed !== null && endsInCode(text.slice(0, offset), lexed));
    const gated: TypeOracle = {
      name: oracle.name,
      members: (f: string, text: string, offset: number) => (isCode(text, offset) ? oracle.members(f, text, offset) : null),
      callShape: (f: string, text: string, offset: number): CallShape | null | Promise<CallShape | null> => (isCode(text, offset) ? oracle.callShape(f, text, offset) : null),
      ...(oracle.typeDefinitions && {
        typeDefinitions: (f: string, text: string, offset: number) => (isCode(text, offset) ? oracle.typeDefinitions!(f, text, offset) : null),
      }),
      ...(oracle.errors && { errors: (f: string, text: string) => oracle.errors!(f, text) }),
      dispose: () => undefined, // owned here, not by the request
    };
    const typescript = isTypeScript
      ? () => {
          const ts = this.oracle(`in-process\0${workspace}`, () => new TypeScriptOracle(workspace));
          if (!ts) throw new Error('the TypeScript service is unavailable');
          return ts as TypeScriptOracle;
        }
      : null;
    return { oracle: gated, typescript, isCode };
  }

  /** The oracle under `key`, created once; null (logged) if it cannot be created. */
  private oracle(key: string, create: () => TypeOracle): TypeOracle | null {
    let oracle = this.oracles.get(key);
    if (oracle) return oracle;
    try {
      oracle = create();
    } catch (e) {
      this.log(`type oracle unavailable (${key.split('\0').join(' for ')}): ${(e as Error).message.split('\n')[0]}; completing without monitors`);
      return null;
    }
    this.oracles.set(key, oracle);
    return oracle;
  }

  /** The file's syntax document (kept for incremental parses), or null for languages without a grammar. */
  private syntaxFor(file: string, languageId?: string): SyntaxDocument | null {
    const abs = path.resolve(file);
    if (this.syntax.has(abs)) {
      const doc = this.syntax.get(abs)!;
      this.syntax.delete(abs); // most recent last
      this.syntax.set(abs, doc);
      return doc;
    }
    const language = syntaxLanguageOf(file, languageId);
    let doc: SyntaxDocument | null = null;
    if (language) {
      try {
        doc = new SyntaxDocument(language);
      } catch (e) {
        this.log(`${(e as Error).message}; monitors go without the syntax check`);
      }
    }
    this.syntax.set(abs, doc);
    if (this.syntax.size > MAX_SYNTAX_DOCUMENTS) this.syntax.delete(this.syntax.keys().next().value!);
    return doc;
  }

  async dispose(): Promise<void> {
    const all = [...this.oracles.values()];
    this.oracles.clear();
    this.syntax.clear();
    await Promise.all(all.map(async (o) => o.dispose()));
  }
}
