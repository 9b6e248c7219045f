/**
 * Which KV the next request starts from. Two levels:
 *  - the resident handle: the last request's sequence, contiguous in the backend. Typing in one document hits it:
 *    the decode loop keeps its longest common prefix with the new prompt and prefills only the rest (no copy at all);
 *  - the prefix cache (prefix-cache.ts): whole blocks of earlier sequences. When the prompt shares more with a cached
 *    sequence than with the resident one (back to another document, a new document after the same context), its
 *    blocks are gathered into a new resident handle in one copy instead of being recomputed.
 * The resident sequence is stashed into the prefix cache when the engine moves to another document (before its
 * tail would be truncated away), not on every keystroke: same-document edits only ever shorten their own tail.
 */
import type { Backend, KvCache } from '../backends/backend.js';
import { kvFloatsPerToken } from '../backends/backend.js';
import { loadCache, saveCache, type PersistIdentity } from './persist.js';
import { PrefixCache, type PrefixCacheStats } from './prefix-cache.js';

export interface KvManagerOptions {
  /** Byte budget of the prefix cache's blocks (default 256 MiB). */
  budgetBytes?: number;
  blockTokens?: number;
  /** Where to persist the prefix cache between runs (null: not persisted). */
  persistFile?: string | null;
  /** Most bytes written when persisting (int8; default 64 MiB). */
  persistBytes?: number;
  /** Identifies the model and weights the KV came from (persisted files for others are rejected). */
  modelKey: string;
  log?: (message: string) => void;
}

export interface KvAcquire {
  cache: KvCache;
  /** Where the reused prefix came from: the resident handle, blocks of the prefix cache, or nothing. */
  source: 'resident' | 'prefix-cache' | 'cold';
  /** Positions the chosen handle already holds in common with the prompt. */
  reusable: number;
  /** Milliseconds spent finding and gathering the prefix (0 on a resident hit). */
  spliceMs: number;
}

export interface KvStats extends PrefixCacheStats {
  residentTokens: number;
  residentBytes: number;
  spliceCount: number;
  loadedBlocks: number;
  persisted: string | null;
}

const DEFAULT_BUDGET = 256 * 2 ** 20;

export class KvManager {
  readonly prefix: PrefixCache;
  private resident: KvCache | null = null;
  private residentDoc: string | undefined;
  private departing: KvCache | null = null;
  private splices = 0;
  private loaded = 0;
  private readonly identity: PersistIdentity;
  private readonly log: (message: string) => void;

  constructor(
    private readonly backend: Backend,
    private readonly o: KvManagerOptions,
  ) {
    const c = backend.config;
    const floatsPerToken = kvFloatsPerToken(c);
    this.prefix = new PrefixCache({ floatsPerToken, budgetBytes: o.budgetBytes ?? DEFAULT_BUDGET, blockTokens: o.blockTokens });
    this.identity = { model: o.modelKey, floatsPerToken, blockTokens: this.prefix.blockTokens, groups: 2 * c.numLayers * c.numKvHeads };
    this.log = o.log ?? (() => {});
    if (o.persistFile) {
      const r = loadCache(this.prefix, this.identity, o.persistFile);
      if ('rejected' in r) this.log(`persisted KV cache ${o.persistFile} not used: ${r.rejected}`);
      else this.loaded = r.blocks;
    }
  }

  /** The handle to decode `tokens` with (document: the file being completed, to notice a switch). */
  acquire(tokens: readonly number[], document: string | undefined): KvAcquire {
    this.flush();
    const resident = (this.resident ??= this.backend.createCache());
    if (this.residentDoc !== undefined && document !== this.residentDoc && resident.length >= this.prefix.blockTokens) {
      // Leaving a document: its sequence's blocks go to the prefix cache, but after this request (flush()), not
      // before its first token. A fork shares storage (the backend copies on write) and keeps them while the decode
      // loop truncates and appends.
      this.departing = resident.fork();
    }
    this.residentDoc = document;
    const t0 = performance.now();
    const common = commonPrefix(resident.tokens, tokens);
    const match = this.prefix.match(tokens);
    try {
      // whole blocks, keeping at least one prompt token to run (the decode loop needs logits)
      const reach = Math.min(match.length, tokens.length - 1);
      const usable = reach - (reach % this.prefix.blockTokens);
      if (usable > common) {
        const fresh = this.backend.importKv(tokens.slice(0, usable), match.blocks.slice(0, usable / this.prefix.blockTokens));
        resident.free();
        this.resident = fresh;
        this.splices++;
        return { cache: fresh, source: 'prefix-cache', reusable: usable, spliceMs: performance.now() - t0 };
      }
    } finally {
      match.release();
    }
    return { cache: resident, source: common > 0 ? 'resident' : 'cold', reusable: common, spliceMs: performance.now() - t0 };
  }

  /** Stashes the sequence of a document the engine left (call when idle; acquire() does it first anyway). */
  flush(): void {
    const d = this.departing;
    if (!d) return;
    this.departing = null;
    try {
      this.stash(d);
    } finally {
      d.free();
    }
  }

  /** Puts the whole blocks of a handle's sequence into the prefix cache. */
  stash(cache: KvCache): void {
    this.prefix.insert(cache.tokens, cache.length, (start, end) => this.backend.exportKv(cache, start, end));
  }

  stats(): KvStats {
    return {
      ...this.prefix.stats(),
      residentTokens: this.resident?.length ?? 0,
      residentBytes: this.resident?.byteSize() ?? 0,
      spliceCount: this.splices,
      loadedBlocks: this.loaded,
      persisted: this.o.persistFile ?? null,
    };
  }

  /** Stashes the resident sequence and writes the hottest blocks to disk (if persisting). Never throws. */
  save(): void {
    if (!this.o.persistFile) return;
    try {
      this.flush();
      if (this.resident && this.resident.length >= this.prefix.blockTokens) this.stash(this.resident);
      saveCache(this.prefix, this.identity, this.o.persistFile, this.o.persistBytes ?? 64 * 2 ** 20);
    } catch (e) {
      // a full disk or a read-only cache directory costs the next start its warm cache, nothing else
      this.log(`could not persist the KV cache to ${this.o.persistFile}: ${(e as Error).message.split('\n')[0]}`);
    }
  }

  dispose(): void {
    this.save();
    this.departing?.free();
    this.departing = null;
    this.resident?.free();
    this.resident = null;
  }
}

function commonPrefix(a: readonly number[], b: readonly number[]): number {
  let n = 0;
  while (n < a.length && n < b.length && a[n] === b[n]) n++;
  return n;
}
