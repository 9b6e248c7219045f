/**
 * A byte trie over the decoded vocabulary: every token id is stored at the node its exact bytes lead to.
 *
 * Nodes are numbered so that each node's children are consecutive and sorted by byte, and token "slots" are
 * assigned in depth-first order: the tokens whose bytes start with a given byte string are exactly the slots of one
 * contiguous range. Masks are then unions of small slot ranges, mapped back to token ids. The trie is stored as
 * parallel typed arrays (structure of arrays): a 151k-token vocabulary makes ~330k nodes, and plain objects would
 * cost both memory and pointer chasing on the hot path.
 *
 * Byte-level, not character-level: Qwen2-style vocabularies hold tokens that are partial UTF-8 sequences, tokens
 * with a leading space, and tokens that cross identifier boundaries (`.length`), and the monitors must see them all.
 */
export class VocabTrie {
  readonly vocabSize: number;
  /** slot -> token id */
  readonly slotToken: Int32Array;
  /** Per node: first child index and child count (children consecutive, sorted by byte). */
  readonly firstChild: Int32Array;
  readonly childCount: Int32Array;
  /** Per node: the byte on the edge from its parent (-1 for the root). */
  readonly byte: Int16Array;
  /** Per node: token slots of the subtree, [slotStart, slotEnd); tokens ending exactly here come first. */
  readonly slotStart: Int32Array;
  readonly slotEnd: Int32Array;
  /** Per node: how many tokens end exactly here. */
  readonly ownTokens: Int32Array;
  readonly nodeCount: number;
  readonly root = 0;

  constructor(tokenBytes: (id: number) => Uint8Array, vocabSize: number) {
    this.vocabSize = vocabSize;
    interface Building {
      children: Map<number, Building>;
      tokens: number[];
    }
    const top: Building = { children: new Map(), tokens: [] };
    let tokens = 0;
    let nodes = 1;
    for (let id = 0; id < vocabSize; id++) {
      const b = tokenBytes(id);
      if (b.length === 0) continue; // special tokens carry no text: never part of an identifier
      let n = top;
      for (const byte of b) {
        let c = n.children.get(byte);
        if (!c) {
          n.children.set(byte, (c = { children: new Map(), tokens: [] }));
          nodes++;
        }
        n = c;
      }
      n.tokens.push(id);
      tokens++;
    }
    this.nodeCount = nodes;
    this.slotToken = new Int32Array(tokens);
    this.firstChild = new Int32Array(nodes);
    this.childCount = new Int32Array(nodes);
    this.byte = new Int16Array(nodes);
    this.slotStart = new Int32Array(nodes);
    this.slotEnd = new Int32Array(nodes);
    this.ownTokens = new Int32Array(nodes);
    this.byte[0] = -1;

    // Depth-first over the pointer trie; a node's children get consecutive indices when it is first visited.
    let nextIndex = 1;
    let slot = 0;
    const stack: Array<{ b: Building; index: number; open: boolean }> = [{ b: top, index: 0, open: false }];
    while (stack.length) {
      const frame = stack[stack.length - 1]!;
      const i = frame.index;
      if (!frame.open) {
        frame.open = true;
        this.slotStart[i] = slot;
        for (const id of frame.b.tokens) this.slotToken[slot++] = id;
        this.ownTokens[i] = frame.b.tokens.length;
        const kids = [...frame.b.children.entries()].sort((x, y) => x[0] - y[0]);
        this.firstChild[i] = nextIndex;
        this.childCount[i] = kids.length;
        for (let k = 0; k < kids.length; k++) this.byte[nextIndex + k] = kids[k]![0];
        // push in reverse so the smallest byte is visited first: slots ascend with bytes
        for (let k = kids.length - 1; k >= 0; k--) stack.push({ b: kids[k]![1], index: nextIndex + k, open: false });
        nextIndex += kids.length;
      } else {
        this.slotEnd[i] = slot;
        stack.pop();
      }
    }
  }

  /** The child of `node` along `byte`, or -1 (binary search over the sorted children). */
  child(node: number, byte: number): number {
    let lo = this.firstChild[node]!;
    let hi = lo + this.childCount[node]! - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const b = this.byte[mid]!;
      if (b === byte) return mid;
      if (b < byte) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }
}
