/**
 * Bracket balancing (engine/postprocess/balance-brackets.ts) and the post-processing chain the language server runs
 * (postProcess: suffix overlap, then balancing). Each case is a document with the cursor at █, a completion, and the
 * document after accepting it (the answer's text inserted at the cursor, replacing `replace` characters after it).
 */
import { describe, expect, it } from 'vitest';
import { balanceBrackets, cutsOpenForSuffix, lineClosers, strayClosersAfter } from '../engine/postprocess/balance-brackets.js';
import { postProcess } from '../engine/postprocess/postprocess.js';

function split(doc: string): { prefix: string; suffix: string } {
  const at = doc.indexOf('█');
  if (at < 0) throw new Error(`no cursor in ${JSON.stringify(doc)}`);
  return { prefix: doc.slice(0, at), suffix: doc.slice(at + 1) };
}

function accept(doc: string, completion: string, finished: boolean, filePath = 'src/a.ts', replace = true): string {
  const { prefix, suffix } = split(doc);
  const r = balanceBrackets(completion, { prefix, suffix, filePath, finished, replace });
  expect(r.replace).toBeGreaterThanOrEqual(0);
  expect(suffix.slice(0, r.replace)).not.toContain('\n');
  return prefix + r.text + suffix.slice(r.replace);
}

const FIN = true;
const CUT = false;

describe('balanceBrackets: nothing to do', () => {
  it.each([
    ['a balanced completion', 'const a = █\n', 'foo(1, [2], {c: 3});', 'const a = foo(1, [2], {c: 3});\n'],
    ['inside a bracket the suffix closes', 'foo(█)', 'a, b', 'foo(a, b)'],
    ["closing the prefix's open bracket (no closer after the cursor)", 'foo(a, █\n', 'b)', 'foo(a, b)\n'],
    ['closing a block the prefix opened, the suffix not', 'if (x) {\n  █', 'go();\n}', 'if (x) {\n  go();\n}'],
    ['brackets in a string', 'const a = █\n', "'(' + x + \"[\"", "const a = '(' + x + \"[\"\n"],
    ['brackets in a comment', 'const a = █\n', 'foo(1); // (see [1]', 'const a = foo(1); // (see [1]\n'],
    ['brackets in a block comment', 'const a = █\n', 'foo(1); /* ( */', 'const a = foo(1); /* ( */\n'],
    ['an apostrophe in JSX text', '<p>█</p>', "Don't stop", "<p>Don't stop</p>"],
    ['a template literal with a substitution', 'const t = █\n', '`a ${f(b)} c`;', 'const t = `a ${f(b)} c`;\n'],
    ['a regex-free division', 'const a = █\n', 'b / (c + d);', 'const a = b / (c + d);\n'],
    ['an unfinished completion whose brackets are closed', 'const a = █\n', 'foo(1).ba', 'const a = foo(1).ba\n'],
  ])('%s', (_name, doc, completion, expected) => {
    expect(accept(doc, completion, FIN)).toBe(expected);
    expect(accept(doc, completion, CUT)).toBe(expected);
  });
});

describe('balanceBrackets: a finished completion gets the closers of what it opened', () => {
  it.each([
    ['a call inside an auto-closed call', 'foo(█)', 'bar(x', 'foo(bar(x))'],
    ['a call at the end of a line', 'const a = █\n', 'foo(1, 2', 'const a = foo(1, 2)\n'],
    ['an argument list left empty is not guessed closed', 'const a = █\n', 'Object.create(', 'const a = Object.create\n'],
    ['nor an array left empty inside a call', 'const a = █\n', 'foo(1, [ ', 'const a = foo(1,)\n'],
    ['a block left empty still is', 'if (x) █\n', '{', 'if (x) {\n}\n'],
    ['nested, innermost first', 'const a = █\n', 'foo(1, [2, {b: 3', 'const a = foo(1, [2, {b: 3}])\n'],
    ['before a trailing semicolon', 'const a = █\n', 'foo(1, 2;', 'const a = foo(1, 2);\n'],
    ['nested before a trailing semicolon', 'const a = █\n', 'foo(bar(1;', 'const a = foo(bar(1));\n'],
    ['an object literal keeps its spacing', 'const o = █\n', '{ a: 1', 'const o = { a: 1 }\n'],
    ['an object literal without spaces', 'const o = █\n', '{a: 1', 'const o = {a: 1}\n'],
    ['a string', 'import x from █\n', "'./foo", "import x from './foo'\n"],
    ['a string, then its call', 'const a = █\n', "require('./foo", "const a = require('./foo')\n"],
    ['a template substitution, then the template', 'const t = █\n', '`a ${b', 'const t = `a ${b}`\n'],
    ['a block, on its own line at the opener line\'s indentation', 'function f() {\n  █\n}', 'if (x) {\n    go();', 'function f() {\n  if (x) {\n    go();\n  }\n}'],
    ['a block opened at the end of the completion', 'function f() {\n  █\n}', 'if (x) {', 'function f() {\n  if (x) {\n  }\n}'],
    ['multi-line arguments', 'function f() {\n  █\n}', 'foo(\n    a,\n    b', 'function f() {\n  foo(\n    a,\n    b\n  )\n}'],
    ['an inline bracket inside a block', 'function f() {\n  █\n}', 'if (x) {\n    go(a;', 'function f() {\n  if (x) {\n    go(a);\n  }\n}'],
    ['a block whose line ends in a comment', 'function f() {\n  █\n}', 'if (x) { // why\n    go();', 'function f() {\n  if (x) { // why\n    go();\n  }\n}'],
    ['CRLF line ends', 'function f() {\r\n  █\r\n}', 'if (x) {\r\n    go();', 'function f() {\r\n  if (x) {\r\n    go();\r\n  }\r\n}'],
    ['a trailing line comment is dropped first', 'const a = █\n', 'foo(1, // one', 'const a = foo(1,)\n'],
  ])('%s', (_name, doc, completion, expected) => {
    expect(accept(doc, completion, FIN)).toBe(expected);
  });

  it.each([
    ['Python brackets', 'x = █\n', 'foo(a, [1, 2', 'src/a.py', 'x = foo(a, [1, 2])\n'],
    ['a Python f-string', 'x = █\n', "f'{a", 'src/a.py', "x = f'{a'\n"],
    ['a Python comment hides brackets', 'x = █\n', 'foo(a)  # see (', 'src/a.py', 'x = foo(a)  # see (\n'],
    ['a Python triple-quoted string spans lines', 'x = █\n', '"""doc (\nmore', 'src/a.py', 'x = """doc (\nmore"""\n'],
    ['a Rust lifetime is not a quote', 'fn f<█>()', "'a", 'src/a.rs', "fn f<'a>()"],
    ['a Rust character literal hides its bracket', 'let c = █;', "'('", 'src/a.rs', "let c = '(';"],
    ['a Rust block', 'fn main() {\n    █\n}', 'if x {\n        go();', 'src/a.rs', 'fn main() {\n    if x {\n        go();\n    }\n}'],
    ['a Go raw string', 'var s = █\n', '`C:\\(x', 'src/a.go', 'var s = `C:\\(x`\n'],
    ['an unknown language is read like C', 'x = █\n', 'f(a, "(" // (', 'notes.txt', 'x = f(a, "(")\n'],
  ])('%s', (_name, doc, completion, file, expected) => {
    const { prefix, suffix } = split(doc);
    const r = balanceBrackets(completion, { prefix, suffix, filePath: file, finished: true });
    expect(prefix + r.text + suffix.slice(r.replace)).toBe(expected);
  });
});

describe('balanceBrackets: closers the suffix has that close nothing', () => {
  it.each([
    ['on the line', 'const a = █)', 'foo(x', 'const a = foo(x)'],
    ['on a later line', 'const a = █\n  1,\n);\n', 'foo(', 'const a = foo(\n  1,\n);\n'],
  ])('%s close what the completion opened', (_name, doc, completion, expected) => {
    expect(accept(doc, completion, FIN)).toBe(expected);
    expect(accept(doc, completion, CUT)).toBe(expected);
  });
});

describe('balanceBrackets: a completion that closes what the suffix closes', () => {
  it.each([
    ['replaces the auto-inserted `)`', 'console.log(█)\n', 'x);', 'console.log(x);\n'],
    ['replaces it and goes on into a block', 'if (█)\n', 'x > 0) {\n  go();\n}', 'if (x > 0) {\n  go();\n}\n'],
    ['replaces the line rest it ends with', 'foo(█);', 'x) + 1;', 'foo(x) + 1;'],
    ['replaces two closers', 'f(g(█))\n', 'x));', 'f(g(x));\n'],
    ['replaces closers after a space', 'f(█ )\n', 'x);', 'f(x);\n'],
    ['replaces an auto-closed quote', "import x from '█'\n", "./foo';", "import x from './foo';\n"],
    ['is cut where the closer is not at the cursor', 'foo(█, b)', 'a), c', 'foo(a, b)'],
    ['is cut where the line goes on differently', 'console.log(█) // log', 'x);', 'console.log(x) // log'],
    ["is cut before a block's closing brace", 'function f() {\n  █\n}\n', 'return 1;\n}', 'function f() {\n  return 1;\n}\n'],
    // the rest of the line was deleted: what the lexer reads as the template's end below is the next template's start
    ['keeps the closers of its own line\'s template', 'const a = `x ${y.█\nconst b = `z`;\n', 'length}`;', 'const a = `x ${y.length}`;\nconst b = `z`;\n'],
    ['keeps the closer of its own line\'s call', 'f(a.█\n  g();\n  h(1));\n', 'b);', 'f(a.b);\n  g();\n  h(1));\n'],
  ])('%s', (_name, doc, completion, expected) => {
    expect(accept(doc, completion, FIN)).toBe(expected);
  });

  it('is cut, not replaced, when the answer may only insert', () => {
    expect(accept('console.log(█)\n', 'x);', FIN, 'src/a.ts', false)).toBe('console.log(x)\n');
    expect(accept('if (█)\n', 'x > 0) {\n  go();\n}', FIN, 'src/a.ts', false)).toBe('if (x > 0)\n');
  });

  it('keeps the replacement only while the closers that make it are kept', () => {
    // cut back to the block's first line: the `)` written there still replaces the auto-inserted one
    expect(accept('if (█)\n', 'x) {\n  go();\n  foo(', CUT)).toBe('if (x) {\n  go();\n}\n');
  });
});

describe('balanceBrackets: a closer that breaks the structure cuts the completion', () => {
  it.each([
    ['the wrong closer', 'foo(█)', 'a]', 'foo(a)'],
    ['a closer of nothing', '█\n', 'x = 1; }', 'x = 1;\n'],
    ['the wrong closer of its own bracket', 'const a = █\n', '[1, 2)', 'const a = \n'],
    ['a string left open across a line end', 'const a = █\n', "'abc\nfoo()", 'const a = \n'],
    ['a block comment left open', 'foo(█)', 'x /* note', 'foo(x)'],
    ['a line comment that would swallow the line rest', 'foo(█)', 'x // note', 'foo(x)'],
  ])('%s', (_name, doc, completion, expected) => {
    expect(accept(doc, completion, FIN)).toBe(expected);
  });
});

describe('balanceBrackets: a completion cut by the token limit is cut back', () => {
  it.each([
    ['before its first unclosed opener', 'const a = █\n', 'foo(1, 2', 'const a = foo\n'],
    ['to the last whole line, closing its blocks', 'function f() {\n  █\n}', 'if (x) {\n    go();\n    bar(', 'function f() {\n  if (x) {\n    go();\n  }\n}'],
    ['to the last whole line', 'function f() {\n  █\n}', 'go();\n  bar(1,', 'function f() {\n  go();\n}'],
    ['an open string included', 'import x from █\n', "'./fo", 'import x from \n'],
    ['a call inside an auto-closed call', 'foo(█)', 'bar(x', 'foo(bar)'],
  ])('%s', (_name, doc, completion, expected) => {
    expect(accept(doc, completion, CUT)).toBe(expected);
  });
});

describe('balanceBrackets: reads only a window of a huge document', () => {
  it('answers on a 10 MB prefix and suffix', () => {
    const big = 'x(1);\n'.repeat(1_750_000);
    const r = balanceBrackets('foo(1', { prefix: big + 'const a = ', suffix: '\n' + big, filePath: 'a.ts', finished: true });
    expect(r).toEqual({ text: 'foo(1)', replace: 0 });
  });
});

describe('postProcess (overlap with the line rest, then balancing)', () => {
  const run = (doc: string, raw: string, stopReason: string, replace = true) => {
    const { prefix, suffix } = split(doc);
    const r = postProcess(raw, { prefix, suffix, filePath: 'src/a.ts', stopReason, replace });
    return prefix + r.text + suffix.slice(r.replace);
  };

  it.each([
    ['an own closer trimmed as overlap comes back', 'foo(█)', 'bar(x)', 'eos', 'foo(bar(x))'],
    ['running into the line rest counts as finished', 'foo(█)', 'bar(x)', 'max-tokens', 'foo(bar(x))'],
    ['with a semicolon', 'foo(█);', 'bar(x);', 'max-tokens', 'foo(bar(x));'],
    ['a body inside auto-closed braces', 'function f() {█}', '\n  return 1;\n}', 'eos', 'function f() {\n  return 1;\n}'],
    ['arguments then the auto-closed `)`', 'foo(█)', 'a, b)', 'eos', 'foo(a, b)'],
    ['the auto-closed `)` replaced', 'console.log(█)', 'x);', 'eos', 'console.log(x);'],
    ['the token limit cuts', 'const a = █', 'foo(1, 2', 'max-tokens', 'const a = foo'],
    ['masked out is not finished', 'const a = █', 'foo(1, 2', 'masked-out', 'const a = foo'],
    ['the end of the block is finished', 'const a = █', 'foo(1, 2', 'block', 'const a = foo(1, 2)'],
    ['a stop string is finished', 'const a = █', 'foo(1, 2', 'stop-string', 'const a = foo(1, 2)'],
  ])('%s', (_name, doc, raw, stopReason, expected) => {
    expect(run(doc, raw, stopReason)).toBe(expected);
  });

  it('never leaves a balanced document unbalanced (random completions)', () => {
    // a small fuzz: random completions in balanced documents, finished or not; the document after must balance
    let seed = 7;
    const rnd = (n: number) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
    const alphabet = ['a', 'b', ' ', ',', '(', ')', '[', ']', '{', '}', ';', "'", '"', '\n', '\n  '];
    const docs = ['f(█);', 'const a = █\n', 'if (x) {\n  █\n}\n', 'g([█]);\n', "h('█');\n", 'k({ a: █ });'];
    for (let k = 0; k < 1000; k++) {
      const raw = Array.from({ length: 1 + rnd(14) }, () => alphabet[rnd(alphabet.length)]).join('');
      for (const doc of docs) {
        for (const stop of ['eos', 'max-tokens']) {
          const after = run(doc, raw, stop);
          expect(balanced(after), `${JSON.stringify(doc)} + ${JSON.stringify(raw)} (${stop}) -> ${JSON.stringify(after)}`).toBe(true);
        }
      }
    }
  });
});

/**
 * Brackets and quotes pair up: the test's own, simpler reading (no comments or escapes; `a'` is an apostrophe; a
 * string ends at its line's end, as in JavaScript).
 */
function balanced(text: string): boolean {
  const stack: string[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    const top = stack.at(-1);
    if (top === "'" || top === '"') {
      if (c === top) stack.pop();
      else if (c === '\n') return false;
    } else if (c === '"' || (c === "'" && !/\w/.test(text[i - 1] ?? ''))) stack.push(c);
    else if (c === '(' || c === '[' || c === '{') stack.push(c);
    else if (c === ')' || c === ']' || c === '}') {
      if (stack.pop() !== { ')': '(', ']': '[', '}': '{' }[c]) return false;
    }
  }
  return stack.length === 0;
}

describe('balanceBrackets: a block whose body is already below', () => {
  it('is not closed on its line when the next line is indented deeper', () => {
    expect(accept('function f(x: number) █\n  return x;\n}\n', '{', FIN)).toBe('function f(x: number) {\n  return x;\n}\n');
    expect(accept('  if (ok) █\n    go();\n', '{', FIN)).toBe('  if (ok) {\n    go();\n');
    // and what encloses it on the line: the lines below go on inside the callback
    expect(accept('  xs.█\n    go(x);\n  });\n', 'forEach((x) => {', FIN)).toBe('  xs.forEach((x) => {\n    go(x);\n  });\n');
  });

  it('is closed when nothing below is indented deeper', () => {
    expect(accept('  if (ok) █\n  go();\n', '{ stop();', FIN)).toBe('  if (ok) { stop(); }\n  go();\n');
  });
});

describe('lineClosers: what is still open on the cursor\'s line', () => {
  const at = (doc: string, text: string) => lineClosers(text, { prefix: split(doc).prefix, filePath: 'src/a.ts' });
  it('closes what the completion and the line before it opened, innermost first', () => {
    expect(at('const m = `min ${█', 'issue.minimum')).toBe('}`');
    expect(at('foo(█', 'a, [b')).toBe('])');
    expect(at('const s = "█', 'abc')).toBe('"');
  });

  it('nothing for a closed line, and never what an earlier line opened', () => {
    expect(at('foo(█', 'a)')).toBe('');
    expect(at('function f() {\n  return █', 'g(1')).toBe(')');
  });

  it('nothing inside a comment', () => {
    expect(at('x = 1; // █', 'see (note')).toBe('');
  });
});

describe('cutsOpenForSuffix: where what the completion leaves open is what the lines below close', () => {
  const cuts = (doc: string, completion: string) => {
    const { prefix, suffix } = split(doc);
    return cutsOpenForSuffix(completion, { prefix, suffix, filePath: 'src/a.ts' }).map((i) => completion.slice(0, i));
  };

  it('cuts after the call and object a closed-on-its-line call opened, when the suffix closes them', () => {
    const doc = 'function f() {\n  store.█\n    next: (v) => log(v),\n  });\n}\n';
    // not after `subscribe(` alone: the suffix's `}` would still close nothing
    expect(cuts(doc, 'subscribe({ next: (v) => v });')).toEqual(['subscribe({']);
  });

  it('only the cuts the suffix fits best, and only better than today', () => {
    // the suffix closes `]` then `)`: `(` alone would leave `]` closing nothing; `([` fits
    expect(cuts('f█\n  1, 2,\n]);\n', '([1, 2]);')).toEqual(['([']);
    // `(` alone leaves the `]` stray but fits the `)`: fewer strays than today, so it is offered; `({` is not
    expect(cuts('f█\n  1, 2,\n]);\n', '({ a: 1 });')).toEqual(['(']);
    // the innermost match is enough: what stays unclosed in the suffix closed nothing before either
    expect(cuts('f█\n  x\n}\n}\n', '{ y }')).toEqual(['{']);
  });

  it('nothing when the suffix closes nothing, or inside strings and templates', () => {
    expect(cuts('const a = █;\nfoo();\n', 'bar({ x: 1 })')).toEqual([]);
    expect(cuts('x(█\n);\n', '"(" + `${y}`')).toEqual([]);
  });

  it('nothing past a closer that breaks the structure', () => {
    expect(cuts('a.█\n});\n', 'b) + c({')).toEqual([]);
  });
});

describe('strayClosersAfter: what the lines below still need the cursor line to open', () => {
  const stray = (doc: string, completion: string) => strayClosersAfter(completion, { ...split(doc), filePath: 'src/a.ts' });
  it('counts the closers below that close nothing or the wrong bracket once the completion is written', () => {
    const doc = 'function f() {\n  store.█\n    next: (v) => log(v),\n  });\n}\n';
    // `});` closes the function early, so its `)` and the last line's `}` close nothing
    expect(stray(doc, '')).toBe(2);
    expect(stray(doc, 'subscribe({ next: (v) => v });')).toBe(2);
    // `}` then closes the wrong bracket (the call's `(` is innermost), and the rest as before
    expect(stray(doc, 'subscribe(')).toBe(3);
    expect(stray(doc, 'subscribe({')).toBe(0);
    // well-formed code below: nothing to open, whatever the completion closes on its own line
    expect(stray('const a = █;\nfoo();\n', 'bar({ x: 1 })')).toBe(0);
    // brackets in strings and comments below are not closers
    expect(stray('x(█\n  ")", // )\n);\n', '')).toBe(0);
  });
});
