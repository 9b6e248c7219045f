import { describe, expect, it } from 'vitest';
import { offsetAt } from '../engine/text/position.js';
import { BadInputError } from '../engine/errors.js';

describe('LSP positions (UTF-16) to string offsets', () => {
  const text = 'ab\r\nc😀d\n\nlast';
  it('maps lines and characters, CRLF and astral characters included', () => {
    expect(offsetAt(text, 0, 0)).toBe(0);
    expect(offsetAt(text, 0, 2)).toBe(2); // end of line 0, before \r
    expect(offsetAt(text, 1, 0)).toBe(4);
    expect(text.slice(offsetAt(text, 1, 3))).toMatch(/^d/); // 😀 is two UTF-16 code units
    expect(offsetAt(text, 2, 0)).toBe(text.indexOf('\n\n') + 1);
    expect(offsetAt(text, 3, 4)).toBe(text.length);
  });
  it('rejects positions outside the document with a one-line BadInputError', () => {
    expect(() => offsetAt(text, 4, 0)).toThrow(BadInputError);
    expect(() => offsetAt(text, 4, 0)).toThrow(/line 4 is outside the document \(4 lines\)/);
    expect(() => offsetAt(text, 0, 3)).toThrow(/character 3 is outside line 0 \(2 characters\)/);
  });
});
