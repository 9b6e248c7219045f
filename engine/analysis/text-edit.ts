/**
 * Text positions and edits shared by the analyses that keep a document across versions (tree-sitter's incremental
 * parse, a language server's incremental sync). Offsets and characters are UTF-16 units, like JavaScript strings,
 * tree-sitter's JS binding and LSP's default position encoding.
 */

/** Line and character of a string offset. */
export function positionAt(text: string, offset: number): { line: number; character: number } {
  let line = 0;
  let lineStart = 0;
  for (let i = text.indexOf('\n'); i !== -1 && i < offset; i = text.indexOf('\n', i + 1)) {
    line++;
    lineStart = i + 1;
  }
  return { line, character: offset - lineStart };
}

/**
 * The one edit turning `a` into `b`, the common prefix and suffix kept: successive shadow documents differ by what
 * was generated at the cursor, so this is small and exact.
 */
export function diffRange(a: string, b: string): { start: number; oldEnd: number; newEnd: number } {
  let start = 0;
  const shorter = Math.min(a.length, b.length);
  while (start < shorter && a.charCodeAt(start) === b.charCodeAt(start)) start++;
  let tail = 0;
  while (tail < shorter - start && a.charCodeAt(a.length - 1 - tail) === b.charCodeAt(b.length - 1 - tail)) tail++;
  return { start, oldEnd: a.length - tail, newEnd: b.length - tail };
}
