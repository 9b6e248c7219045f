/**
 * LSP positions: 0-based line and character, where character counts UTF-16 code units (LSP's default encoding).
 * JavaScript strings are UTF-16 too, so a character is an index into the line's string.
 */
import { BadInputError } from '../errors.js';

/** The string offset of (line, character) in `text`; BadInputError naming `what` when it is outside the text. */
export function offsetAt(text: string, line: number, character: number, what = 'document'): number {
  let start = 0;
  for (let l = 0; l < line; l++) {
    const nl = text.indexOf('\n', start);
    if (nl < 0) throw new BadInputError(`${what}: line ${line} is outside the document (${l + 1} lines)`);
    start = nl + 1;
  }
  let end = text.indexOf('\n', start);
  if (end < 0) end = text.length;
  if (end > start && text[end - 1] === '\r') end--; // the \r of a CRLF belongs to the line break
  if (character > end - start) throw new BadInputError(`${what}: character ${character} is outside line ${line} (${end - start} characters)`);
  return start + character;
}
