/**
 * The managed KV cache: keys/values of token sequences the model has already seen, in fixed-size blocks, found by
 * the longest common prefix of a new prompt (a radix tree whose edges are whole blocks, as SGLang's RadixAttention
 * with a page size, or vLLM's prefix caching with the tree made explicit).
 *
 * Blocks hold a backend-independent copy of the KV (Backend.exportKv's layout), so the same tree serves every
 * backend, can be written to disk and survives the handle it came from. A prompt's cached prefix is turned back into
 * a backend handle by one gather (Backend.importKv). Only whole blocks are cached: the partial block at the end of a
 * sequence is cheap to recompute and would rarely be shared.
 *
 * Memory is bounded by a byte budget. Blocks a request is using are pinned (reference counts); when a new block does
 * not fit, unpinned leaves are evicted least recently used first (a parent becomes a leaf, and evictable, once its
 * children are gone), so a shared context prefix outlives the documents that used it.
 */

export interface PrefixCacheOptions {
  /** Floats per position in a block (kvFloatsPerToken of the model). */
  floatsPerToken: number;
  /** Byte budget for all blocks. */
  budgetBytes: number;
  /** Positions per block (default 32). */
  blockTokens?: number;
}

export interface PrefixCacheStats {
  blocks: number;
  bytes: number;
  budgetBytes: number;
  blockTokens: number;
  /** Lookups that found at least one block / none. */
  hits: number;
  misses: number;
  insertedBlocks: number;
  evictedBlocks: number;
}

/** A cached prefix, pinned until released: its length in positions and its blocks' data in order. */
export interface PrefixMatch {
  length: number;
  blocks: Float32Array[];
  release(): void;
}

class Block {
  readonly children = new Map<string, Block>();
  refs = 0;
  lastUsed = 0;

  constructor(
    readonly key: string,
    readonly tokens: readonly number[],
    readonly parent: Block | null,
    readonly data: Float32Array,
  ) {}
}

export class PrefixCache {
  readonly blockTokens: number;
  private readonly blockBytes: number;
  private readonly root = new Block('', [], null, new Float32Array(0));
  private count = 0;
  private clock = 0;
  private readonly counters = { hits: 0, misses: 0, insertedBlocks: 0, evictedBlocks: 0 };

  constructor(private readonly o: PrefixCacheOptions) {
    this.blockTokens = o.blockTokens ?? 32;
    if (!(this.blockTokens >= 1) || !(o.floatsPerToken >= 1)) throw new RangeError('prefix cache: block size and floats per token must be positive');
    this.blockBytes = this.blockTokens * o.floatsPerToken * 4;
  }

  /** The longest cached prefix of `tokens`, in whole blocks, pinned: call release() when its data has been used. */
  match(tokens: readonly number[]): PrefixMatch {
    const path: Block[] = [];
    let node = this.root;
    const now = ++this.clock;
    for (let at = 0; at + this.blockTokens <= tokens.length; at += this.blockTokens) {
      const next = node.children.get(keyOf(tokens, at, this.blockTokens));
      if (!next) break;
      next.refs++;
      next.lastUsed = now;
      path.push(next);
      node = next;
    }
    if (path.length) this.counters.hits++;
    else this.counters.misses++;
    let released = false;
    return {
      length: path.length * this.blockTokens,
      blocks: path.map((b) => b.data),
      release: () => {
        if (released) return;
        released = true;
        for (const b of path) b.refs--;
      },
    };
  }

  /**
   * Caches the whole blocks of `tokens[0..upTo)` that are not cached yet, reading their KV with `read(start, end)`.
   * Stops early (keeping what it added) when the budget cannot make room. Returns the number of blocks added.
   */
  insert(tokens: readonly number[], upTo: number, read: (start: number, end: number) => Float32Array): number {
    const end = Math.min(upTo, tokens.length);
    const path: Block[] = [];
    let node = this.root;
    let added = 0;
    const now = ++this.clock;
    try {
      for (let at = 0; at + this.blockTokens <= end; at += this.blockTokens) {
        const key = keyOf(tokens, at, this.blockTokens);
        let next = node.children.get(key);
        if (!next) {
          if (!this.makeRoom(this.blockBytes)) break;
          const data = read(at, at + this.blockTokens);
          if (data.length * 4 !== this.blockBytes) throw new RangeError(`prefix cache: a block read ${data.length} floats, expected ${this.blockBytes / 4}`);
          next = new Block(key, tokens.slice(at, at + this.blockTokens), node, data);
          node.children.set(key, next);
          this.count++;
          added++;
        }
        next.lastUsed = now;
        // pinned while we go deeper, so making room for a child never evicts its own parent
        next.refs++;
        path.push(next);
        node = next;
      }
    } finally {
      for (const b of path) b.refs--;
    }
    this.counters.insertedBlocks += added;
    return added;
  }

  /** Frees unpinned least-recently-used leaves until `bytes` more fit in the budget; false if they cannot. */
  private makeRoom(bytes: number): boolean {
    if (bytes > this.o.budgetBytes) return false;
    while (this.bytes() + bytes > this.o.budgetBytes) {
      // Evict in batches: the oldest unpinned leaves, until under budget or none is left. Parents freed by the
      // batch become leaves for the next round.
      const leaves: Block[] = [];
      this.forEach((b) => {
        if (b.children.size === 0 && b.refs === 0) leaves.push(b);
      });
      if (leaves.length === 0) return false;
      leaves.sort((a, b) => a.lastUsed - b.lastUsed);
      for (const leaf of leaves) {
        if (this.bytes() + bytes <= this.o.budgetBytes) break;
        leaf.parent!.children.delete(leaf.key);
        this.count--;
        this.counters.evictedBlocks++;
      }
    }
    return true;
  }

  bytes(): number {
    return this.count * this.blockBytes;
  }

  stats(): PrefixCacheStats {
    return { blocks: this.count, bytes: this.bytes(), budgetBytes: this.o.budgetBytes, blockTokens: this.blockTokens, ...this.counters };
  }

  /**
   * The cached sequences as (parent index, tokens, data) in an order where parents come first, most recently used
   * subtrees first; for persistence. `maxBlocks` keeps the hottest blocks (and their ancestors).
   */
  snapshot(maxBlocks = Infinity): { parent: number; tokens: readonly number[]; data: Float32Array }[] {
    const keep = new Set<Block>();
    const all: Block[] = [];
    this.forEach((b) => all.push(b));
    all.sort((a, b) => b.lastUsed - a.lastUsed);
    for (const b of all) {
      if (keep.size >= maxBlocks) break;
      for (let x: Block | null = b; x && x !== this.root && !keep.has(x); x = x.parent) keep.add(x);
    }
    const out: { parent: number; tokens: readonly number[]; data: Float32Array }[] = [];
    const index = new Map<Block, number>();
    const visit = (b: Block) => {
      for (const c of b.children.values()) {
        if (!keep.has(c)) continue;
        index.set(c, out.length);
        out.push({ parent: b === this.root ? -1 : index.get(b)!, tokens: c.tokens, data: c.data });
        visit(c);
      }
    };
    visit(this.root);
    return out;
  }

  /** Restores blocks from a snapshot (parents first), within the budget. Returns how many were added. */
  restore(entries: readonly { parent: number; tokens: readonly number[]; data: Float32Array }[]): number {
    const nodes: (Block | null)[] = [];
    let added = 0;
    for (const e of entries) {
      const parent = e.parent < 0 ? this.root : nodes[e.parent];
      if (!parent || e.tokens.length !== this.blockTokens || e.data.length * 4 !== this.blockBytes || !this.makeRoom(this.blockBytes)) {
        nodes.push(null);
        continue;
      }
      const key = keyOf(e.tokens, 0, this.blockTokens);
      let node = parent.children.get(key);
      if (!node) {
        node = new Block(key, e.tokens.slice(), parent, e.data);
        parent.children.set(key, node);
        this.count++;
        added++;
      }
      nodes.push(node);
    }
    return added;
  }

  private forEach(f: (b: Block) => void): void {
    const stack = [...this.root.children.values()];
    while (stack.length) {
      const b = stack.pop()!;
      f(b);
      for (const c of b.children.values()) stack.push(c);
    }
  }
}

function keyOf(tokens: readonly number[], at: number, n: number): string {
  let key = '';
  for (let i = at; i < at + n; i++) key += tokens[i]!.toString(36) + ',';
  return key;
}
