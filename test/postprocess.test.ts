import { describe, expect, it } from 'vitest';
import { trimSuffixOverlap } from '../engine/postprocess/suffix-overlap.js';
import { inCommentOrString } from '../engine/postprocess/in-comment-or-string.js';

describe('post-processing', () => {
  it.each([
    ['a, b)', ')', 'a, b'],
    ['x);', ');', 'x'],
    ['value', '', 'value'],
    ['foo()', ') + 1', 'foo('],
    ['bar', ')', 'bar'],
  ])('trimSuffixOverlap(%j, %j) = %j', (text, rest, expected) => {
    expect(trimSuffixOverlap(text, rest)).toBe(expected);
  });

  it.each([
    ['const a = 1; // note: ', true],
    ['const s = "abc', true],
    ["const s = 'ab' + x.", false],
    ['/* open comment ', true],
    ['/* closed */ x.', false],
    ['const t = `hello ${name', false], // inside a template expression: code
    ['const t = `hello ', true],
    ['return acc.', false],
    // after a template with substitutions the code goes on (the `}` continues the template, its backtick closes it)
    ['const t = `a ${x} b ${y.z} c`;\nsum += c.', false],
    ['const t = `a ${ {k: 1}.k } b`;\nx.', false],
    ['const t = `a ${x} b ', true],
    ['const t = `a ${x} b ${y', false],
    ['const t = `a ${`inner ${x}`} b', true],
    ['const t = `a ${`inner ${x}`} b`; f(', false],
  ])('inCommentOrString(%j) = %s', (prefix, expected) => {
    expect(inCommentOrString(prefix, 'a.ts')).toBe(expected);
  });
});
