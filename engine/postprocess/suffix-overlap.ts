/**
 * Drops the end of a completion that the document already has after the cursor: completing `foo(` before `)` must
 * not insert a second `)`. The longest completion tail that is a prefix of the rest of the cursor's line is cut.
 */
export function trimSuffixOverlap(text: string, lineRest: string): string {
  const rest = lineRest.replace(/\s+$/, '');
  if (!rest) return text;
  for (let n = Math.min(text.length, rest.length); n > 0; n--) if (text.endsWith(rest.slice(0, n))) return text.slice(0, text.length - n);
  return text;
}
