import { describe, expect, it } from 'vitest';
import { createRequire } from 'node:module';
import Parser from 'tree-sitter';
import { SyntaxDocument, syntaxLanguageOf, type SyntaxLanguage } from '../engine/analysis/syntax.js';

/** Classifies the position marked `|` in `src`. */
function at(language: SyntaxLanguage, marked: string) {
  const offset = marked.indexOf('|');
  const doc = new SyntaxDocument(language);
  doc.update(marked.slice(0, offset) + marked.slice(offset + 1));
  return doc.classify(offset);
}

describe('syntax: tree-sitter classification', () => {
  it('knows the grammar from the languageId or the extension', () => {
    expect(syntaxLanguageOf('a/b.tsx')).toBe('tsx');
    expect(syntaxLanguageOf('x.pyi')).toBe('python');
    expect(syntaxLanguageOf('x.rs')).toBe('rust');
    expect(syntaxLanguageOf('x.txt', 'go')).toBe('go');
    expect(syntaxLanguageOf('x.cobol')).toBeNull();
    expect(syntaxLanguageOf(undefined)).toBeNull();
  });

  it.each<[SyntaxLanguage, string, string]>([
    ['typescript', 'const s = "abc.|";\nfoo();', 'string'],
    ['typescript', 'const s = "abc.|\nfoo();', 'string'], // unterminated: error recovery
    ['typescript', 'const s = `a ${b.|c} d`;', 'code'], // inside a template substitution
    ['typescript', 'const s = `a ${b.c} d.|`;', 'template'],
    ['typescript', '// é a.|b\nx.y', 'comment'],
    ['typescript', '/* a.| */ x', 'comment'],
    ['typescript', 'x = /a.|b/;', 'regex'],
    ['typescript', 'x = a.|\nfoo();', 'code'],
    ['typescript', 'const s = "done";|', 'code'],
    ['tsx', 'const x = <A b={c.|d}>some text.|</A>;', 'code'],
    ['javascript', "f('it.|s')", 'string'],
    ['python', 'x = f"a{b.|c}d."\n', 'code'],
    ['python', 'x = f"a{b.c}d.|"\n', 'string'],
    ['python', '# a.|b\nx.y', 'comment'],
    ['python', 's = """doc.|\n', 'string'],
    ['python', 'import os\nos.|\n', 'code'],
    ['go', 'package m\nfunc f() { s := "a.|b" }', 'string'],
    ['go', 'package m\nfunc f() { fmt.|Println() }', 'code'],
    ['rust', 'fn main() { let s = "a.|b"; }', 'string'],
    ['rust', 'fn main() { /// doc.|\n v.iter(); }', 'comment'],
    ['java', 'class A { void f() { a.|b(); } }', 'code'],
    ['java', 'class A { void f() { String s = "a.|b"; } }', 'string'],
  ])('%s %j is %s', (language, src, context) => {
    expect(at(language, src).context).toBe(context);
  });

  it.each<[SyntaxLanguage, string, string | null]>([
    ['typescript', 'const n = acc.ba|', 'member'],
    ['typescript', 'const n = acc?.|', 'member'],
    ['typescript', 'const n = 1.|', null],
    ['typescript', 'f(a, |b);', 'call-arguments'],
    ['typescript', 'const a = new Acc|(1);', 'new'],
    ['typescript', 'import { Acc|, B } from "./m";', 'import-specifier'],
    ['typescript', 'switch (k) { case Kind.|A: break; }', 'member'],
    ['typescript', 'switch (k) { case |A: break; }', 'switch-case'],
    ['python', 'print(a, |b)\n', 'call-arguments'],
    ['python', 'from os import pa|th\n', 'import-specifier'],
    ['rust', 'fn main() { let v = Vec::|new(); }', 'member'],
    ['go', 'package m\nfunc f() { g(1, |2) }', 'call-arguments'],
    ['java', 'class A { void f() { Object o = new Obj|ect(); } }', 'new'],
    ['java', 'class A { void f(K k) { switch (k) { case A|: break; } } }', 'switch-case'],
  ])('%s %j is a %s site', (language, src, site) => {
    const c = at(language, src);
    expect(c.context).toBe('code');
    expect(c.site).toBe(site);
  });

  it('re-parses incrementally to the same tree as a fresh parse (non-ASCII text, edits anywhere)', () => {
    const fresh = new Parser();
    // the test compares trees, so it needs the grammar directly; the document hides its parser
    fresh.setLanguage((createRequire(import.meta.url)('tree-sitter-typescript') as { typescript: Parser.Language }).typescript);
    const doc = new SyntaxDocument('typescript');
    let text = 'const café = "naïve";\nfunction f(x: number) {\n  return x.toFixed(2); // ünïcödé\n}\n';
    let seed = 7;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff), seed % n);
    const pieces = ['x.', '(', ')', '"é', '\n', 'foo', ' ', '`${a.', '}`', '// ö\n', ';'];
    for (let i = 0; i < 150; i++) {
      const at = rand(text.length + 1);
      const del = rand(3);
      text = text.slice(0, at) + pieces[rand(pieces.length)] + text.slice(Math.min(text.length, at + del));
      doc.update(text);
      const expected = fresh.parse(text).rootNode.toString();
      // classify walks the incrementally maintained tree: compare it through a public view of the structure
      expect((doc as unknown as { tree: Parser.Tree }).tree.rootNode.toString()).toBe(expected);
    }
  });

  it('parses a 6,000-line file and classifies the end of it after an append', () => {
    const doc = new SyntaxDocument('typescript');
    const big = 'const a = "é";\nfunction f(x: number) { return x.toFixed(2); }\n'.repeat(3000);
    doc.update(big);
    expect(doc.isCode(big + 'foo.', big.length + 4)).toBe(true);
    expect(doc.isCode(big + '"foo.', big.length + 5)).toBe(false);
  });
});
