/**
 * The constraint of one constrained segment: a member access after a dot, then free text up to the next dot.
 *
 *   segment = "." name tail
 *   name    = one of the legal names (a trie, so the engine's matcher shares prefixes)
 *   tail    = ( not-identifier-char  anything-but-a-dot* )?  "."?
 *
 * The "." is inside the segment, not at the end of the free text before it: tokenizers split `obj.length`
 * differently (Qwen2 / Llama 3: `obj` `.length`; GPT-2 / StarCoder: `obj` `.` `length`), so the free segment stops
 * before the dot (stop string ".") and the constrained one starts with it. The tail lets the model go on writing
 * unconstrained after the name, in the same request, until it writes the next dot, which ends the segment (the
 * grammar accepts nothing after it) and is the next trigger. One request per trigger, and the model's distribution
 * is untouched outside the name.
 *
 * vLLM and SGLang take the regex, llama.cpp's server the GBNF grammar; both say the same thing.
 */
const IDENT_OR_DOT = 'A-Za-z0-9_$.';

interface TrieNode {
  end: boolean;
  next: Map<string, TrieNode>;
}

function trieOf(names: readonly string[]): TrieNode {
  const root: TrieNode = { end: false, next: new Map() };
  for (const name of names) {
    let n = root;
    for (const ch of name) {
      let c = n.next.get(ch);
      if (!c) n.next.set(ch, (c = { end: false, next: new Map() }));
      n = c;
    }
    n.end = true;
  }
  return root;
}

const escapeRegex = (ch: string) => ch.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&');

/** A regex for exactly the names, factored as a trie: `len(?:gth)?` style, `$` escaped. */
export function namesRegex(names: readonly string[]): string {
  const walk = (n: TrieNode): string => {
    const alts = [...n.next].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([ch, c]) => escapeRegex(ch) + walk(c));
    if (alts.length === 0) return '';
    if (n.end) return `(?:${alts.join('|')})?`; // a name ends here, and longer ones go on
    return alts.length === 1 ? alts[0]! : `(?:${alts.join('|')})`;
  };
  return walk(trieOf(names));
}

export interface SegmentConstraint {
  names: readonly string[];
  /** For vLLM's structured_outputs.regex and SGLang's sampling_params.regex. */
  regex: string;
  /** For llama.cpp's server (`grammar`). */
  gbnf: string;
}

const gbnfString = (s: string) => JSON.stringify(s); // GBNF literals use JSON-style escapes

export function memberSegmentConstraint(names: readonly string[]): SegmentConstraint {
  if (names.length === 0) throw new RangeError('a member constraint needs at least one name');
  const unique = [...new Set(names)];
  const regex = `\\.${namesRegex(unique)}(?:[^${IDENT_OR_DOT}][^.]*)?\\.?`;
  const gbnf = [
    'root ::= "." name tail',
    `name ::= ${unique.map(gbnfString).join(' | ')}`,
    `tail ::= ([^${IDENT_OR_DOT}] [^.]*)? "."?`,
  ].join('\n');
  return { names: unique, regex, gbnf };
}
