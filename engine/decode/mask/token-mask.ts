/**
 * Allowed-token masks for an identifier constraint: "the text emitted next must spell one of `names`, continuing
 * from the `typed` part already emitted; once a name is complete, anything that may follow an identifier may come".
 *
 * A token is allowed iff, appended to `typed`, its bytes are
 *   (a) a prefix of some name (the identifier goes on in a later token), or
 *   (b) a complete name followed by bytes whose first byte may follow an identifier (`length(`, `size;`), or
 *   (c) when `typed` already is a complete name, any token whose first byte may follow an identifier.
 * Per name that is one walk down the vocabulary trie along the name's remaining bytes: the tokens ending on the
 * path are (a); at the end node, the subtrees under "may follow" bytes are (b). Set (c) is the same for every
 * request and precomputed. Masks are bitsets over token ids, cached by (names, typed).
 *
 * Names may contain any characters; a monitor that wants the dot inside the constrained span (Qwen2 tokenizes
 * `obj.length` as `obj` `.length`) passes names like ".length".
 */
import type { VocabTrie } from './vocab-trie.js';

/** Bytes that continue an identifier in JS/TS and most languages: [A-Za-z0-9_$] and non-ASCII (UTF-8) bytes. */
export function isIdentifierByte(b: number): boolean {
  return (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b === 0x5f || b === 0x24 || b >= 0x80;
}

const encoder = new TextEncoder();
const CACHE_LIMIT = 512;

export class TokenMasks {
  private readonly words: number;
  /** (c): tokens whose first byte may follow a complete identifier. */
  private readonly afterComplete: Uint32Array;
  private readonly cache = new Map<string, Uint32Array>();
  private readonly nameSetIds = new WeakMap<readonly string[], number>();
  private readonly notStartingWith = new Map<number, Uint32Array>();
  private nextNameSetId = 0;

  constructor(
    private readonly trie: VocabTrie,
    private readonly mayFollow: (byte: number) => boolean = (b) => !isIdentifierByte(b),
  ) {
    this.words = Math.ceil(trie.vocabSize / 32);
    this.afterComplete = new Uint32Array(this.words);
    const first = trie.firstChild[trie.root]!;
    for (let c = first; c < first + trie.childCount[trie.root]!; c++) if (this.mayFollow(trie.byte[c]!)) this.setSlots(this.afterComplete, trie.slotStart[c]!, trie.slotEnd[c]!);
  }

  /**
   * The allowed-token bitset (bit i of word i>>5 set = token i allowed). The returned array is cached and shared:
   * callers must not modify it. `names` should be the same array object across steps of one constraint so the cache
   * hits; a new array is a new constraint.
   */
  allowed(names: readonly string[], typed = ''): Uint32Array {
    let setId = this.nameSetIds.get(names);
    if (setId === undefined) this.nameSetIds.set(names, (setId = this.nextNameSetId++));
    const key = `${setId}\u0000${typed}`;
    const hit = this.cache.get(key);
    if (hit) {
      this.cache.delete(key); // refresh LRU position
      this.cache.set(key, hit);
      return hit;
    }
    const bits = this.compute(names, typed);
    this.cache.set(key, bits);
    if (this.cache.size > CACHE_LIMIT) this.cache.delete(this.cache.keys().next().value!);
    return bits;
  }

  /**
   * allowed(names, typed) plus every token whose first byte is not `byte`: "if you start with this byte, you must
   * follow the constraint". Used where a constrained construct may or may not begin (a `.` inside `.length`).
   */
  allowedOr(names: readonly string[], typed: string, byte: number): Uint32Array {
    const key = `or${byte}\u0000${this.nameSetIds.get(names) ?? -1}\u0000${typed}`;
    const hit = this.cache.get(key);
    if (hit && this.nameSetIds.has(names)) return hit;
    const base = this.allowed(names, typed);
    let others = this.notStartingWith.get(byte);
    if (!others) {
      others = new Uint32Array(this.words);
      const first = this.trie.firstChild[this.trie.root]!;
      for (let c = first; c < first + this.trie.childCount[this.trie.root]!; c++)
        if (this.trie.byte[c] !== byte) this.setSlots(others, this.trie.slotStart[c]!, this.trie.slotEnd[c]!);
      this.notStartingWith.set(byte, others);
    }
    const out = new Uint32Array(this.words);
    for (let w = 0; w < this.words; w++) out[w] = base[w]! | others[w]!;
    this.cache.set(`or${byte}\u0000${this.nameSetIds.get(names)}\u0000${typed}`, out);
    if (this.cache.size > CACHE_LIMIT) this.cache.delete(this.cache.keys().next().value!);
    return out;
  }

  /** Tokens whose bytes start with `prefix` (one subtree of the trie), for token healing. */
  startingWith(prefix: Uint8Array): Uint32Array {
    const bits = new Uint32Array(this.words);
    let node = this.trie.root;
    for (const b of prefix) {
      node = this.trie.child(node, b);
      if (node < 0) return bits;
    }
    this.setSlots(bits, this.trie.slotStart[node]!, this.trie.slotEnd[node]!);
    return bits;
  }

  private compute(names: readonly string[], typed: string): Uint32Array {
    const bits = new Uint32Array(this.words);
    let complete = false;
    const asciiTyped = isAscii(typed);
    for (let k = 0; k < names.length; k++) {
      const name = names[k]!;
      if (name.length < typed.length || !name.startsWith(typed)) continue;
      if (name.length === typed.length) {
        complete = true;
        continue;
      }
      // Identifiers are nearly always ASCII: walk by char code, no encoding (1,000 TextEncoder calls cost ~0.6 ms).
      if (asciiTyped && isAscii(name)) this.walkAscii(bits, name, typed.length);
      else {
        const full = encoder.encode(name);
        const skip = encoder.encode(typed).length;
        this.walk(bits, full.length - skip, (i) => full[skip + i]!);
      }
    }
    if (complete) for (let w = 0; w < this.words; w++) bits[w]! |= this.afterComplete[w]!;
    return bits;
  }

  /** walk() for an ASCII name from character `from`, without a closure per byte (the hot path). */
  private walkAscii(bits: Uint32Array, name: string, from: number): void {
    const t = this.trie;
    const { firstChild, childCount, byte, ownTokens, slotStart } = t;
    let node = t.root;
    for (let i = from; i < name.length; i++) {
      const b = name.charCodeAt(i);
      // binary search among the node's children (sorted by byte)
      let lo = firstChild[node]!;
      let hi = lo + childCount[node]! - 1;
      let next = -1;
      while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        const mb = byte[mid]!;
        if (mb === b) {
          next = mid;
          break;
        }
        if (mb < b) lo = mid + 1;
        else hi = mid - 1;
      }
      if (next < 0) return;
      node = next;
      const own = ownTokens[node]!;
      if (own) this.setSlots(bits, slotStart[node]!, slotStart[node]! + own);
    }
    const first = firstChild[node]!;
    for (let c = first; c < first + childCount[node]!; c++) if (this.mayFollow(byte[c]!)) this.setSlots(bits, slotStart[c]!, t.slotEnd[c]!);
  }

  /** Marks (a) the tokens spelling a prefix of the `length` remaining bytes and (b) the whole rest + a may-follow byte. */
  private walk(bits: Uint32Array, length: number, byteAt: (i: number) => number): void {
    const t = this.trie;
    let node = t.root;
    let depth = 0;
    for (; depth < length; depth++) {
      node = t.child(node, byteAt(depth));
      if (node < 0) return;
      const own = t.ownTokens[node]!;
      if (own) this.setSlots(bits, t.slotStart[node]!, t.slotStart[node]! + own);
    }
    const first = t.firstChild[node]!;
    for (let c = first; c < first + t.childCount[node]!; c++) if (this.mayFollow(t.byte[c]!)) this.setSlots(bits, t.slotStart[c]!, t.slotEnd[c]!);
  }

  private setSlots(bits: Uint32Array, from: number, to: number): void {
    const slotToken = this.trie.slotToken;
    for (let s = from; s < to; s++) {
      const id = slotToken[s]!;
      bits[id >>> 5]! |= 1 << (id & 31);
    }
  }
}

/** Sets the logits of tokens not in `allowed` to -Infinity. Returns how many tokens stayed allowed. */
export function applyMask(logits: Float32Array, allowed: Uint32Array): number {
  let kept = 0;
  const n = logits.length;
  const words = Math.ceil(n / 32);
  for (let w = 0; w < words; ) {
    if ((allowed[w] ?? 0) === 0) {
      // masks are sparse: fill whole runs of forbidden words at once
      let e = w + 1;
      while (e < words && (allowed[e] ?? 0) === 0) e++;
      logits.fill(-Infinity, w * 32, Math.min(e * 32, n));
      w = e;
      continue;
    }
    const word = allowed[w]!;
    const base = w * 32;
    const end = Math.min(base + 32, n);
    for (let i = base; i < end; i++) {
      if (word & (1 << (i - base))) kept++;
      else logits[i] = -Infinity;
    }
    w++;
  }
  return kept;
}

function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return false;
  return true;
}

export function isAllowed(allowed: Uint32Array, id: number): boolean {
  return ((allowed[id >>> 5] ?? 0) & (1 << (id & 31))) !== 0;
}

/** The tokens both masks allow (a new array, as long as the shorter: a missing word allows nothing). */
export function intersect(a: Uint32Array, b: Uint32Array): Uint32Array {
  const out = new Uint32Array(Math.min(a.length, b.length));
  for (let w = 0; w < out.length; w++) out[w] = a[w]! & b[w]!;
  return out;
}
