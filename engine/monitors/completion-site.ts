/**
 * Monitors for identifier sites whose legal names are a filtered completion list of the type oracle:
 *   new-class:     after `new `, only values that can be constructed (non-abstract classes, Map, Date...);
 *   import-names:  inside `import { ... } from "m"` (the `from` clause is in the suffix), only m's exports;
 *   switch-enum:   after `case ` in a switch over an enum, only the enum (its members follow through `Enum.`).
 * Each is a trigger pattern on the end of the text (capturing the identifier being written) plus a filter. State is
 * derived from the text each step, like the dereference monitor; the list is fetched once per identifier start.
 */
import type ts from 'typescript';
// (the site kinds below are data; the engine maps their `query` to the oracle's methods)
import type { DecodeState } from '../decode/logits-processor.js';
import type { TokenMasks } from '../decode/mask/token-mask.js';
import type { Awaitable } from '../analysis/oracle.js';
import { Answers, emptyStats, onlyContinuation, settleName, type Monitor } from './monitor.js';

/** Legal names for an identifier of `site` starting at `offset` of the shadow text, or null for no constraint. */
export type SiteOracle = (site: SiteKind, text: string, offset: number) => Awaitable<string[] | null>;

export interface SiteKind {
  kind: string;
  /** Matches the end of the text when an identifier of this kind is being written; group 1 is its typed part. */
  trigger: RegExp;
  /** Which question to ask the oracle: constructible values in scope, or the completion list filtered by `keep`. */
  query: 'constructible' | 'completions' | 'switch-enum';
  keep?: (e: ts.CompletionEntry) => boolean;
  /** Extra condition on the document after the cursor (e.g. the `} from "m"` an import site needs). */
  suffix?: RegExp;
}

export const NEW_CLASS: SiteKind = {
  kind: 'new-class',
  trigger: /(?:^|[^\w$.])new\s+([A-Za-z_$][\w$]*)?$/,
  // completion kinds cannot tell (imported classes are 'alias', Map is 'var'): the checker decides
  query: 'constructible',
};

export const IMPORT_NAMES: SiteKind = {
  kind: 'import-names',
  trigger: /(?:^|\n)\s*import\s+(?:type\s+)?\{(?:[^{}]*,)?\s*(?:type\s+)?([A-Za-z_$][\w$]*)?$/,
  query: 'completions',
  keep: (e) => e.kind !== 'keyword',
  suffix: /^[^;{]*\}\s*from\s*['"]/,
};

export const SWITCH_ENUM: SiteKind = {
  kind: 'switch-enum',
  trigger: /(?:^|[^\w$.])case\s+([A-Za-z_$][\w$]*)?$/,
  // the enum's name; `Enum.` is then the dereference monitor's site
  query: 'switch-enum',
};

export class CompletionSiteMonitor implements Monitor {
  readonly stats = emptyStats();
  private readonly lists = new Answers<string[]>(this.stats);

  constructor(
    private readonly siteKind: SiteKind,
    private readonly prefix: string,
    private readonly suffix: string,
    private readonly oracle: SiteOracle,
    private readonly masks: TokenMasks,
  ) {}

  get kind(): string {
    return this.siteKind.kind;
  }

  prepare(state: DecodeState): Promise<unknown> | undefined {
    const site = this.siteAt(this.prefix + state.text);
    if (!site || this.lists.get(site.start) !== undefined) return undefined;
    return this.lists.ask(site.start, () => this.oracle(this.siteKind, site.before + this.suffix, site.start));
  }

  allowed(state: DecodeState): Uint32Array | null {
    const site = this.siteAt(this.prefix + state.text);
    if (!site) return null;
    const names = this.lists.get(site.start);
    if (!names || !names.some((n) => n.startsWith(site.typed))) return null;
    this.stats.maskedSteps++;
    return this.masks.allowed(names, site.typed);
  }

  /** The rest of the only legal name that starts with what is typed (fast-forward). */
  forced(state: DecodeState): string | null {
    const site = this.siteAt(this.prefix + state.text);
    const names = site && this.lists.get(site.start);
    return names ? onlyContinuation(names, site.typed) : null;
  }

  /** Never end halfway through a name of this kind: finish the only legal one, or cut back to before it. */
  settle(text: string): { append: string } | { cut: number } | null {
    const site = this.siteAt(this.prefix + text);
    const names = site && this.lists.get(site.start);
    return names ? settleName(names, site.typed, text.length) : null;
  }

  /** The identifier of this kind being written at the end of `text`: where it starts and what is typed. */
  private siteAt(text: string): { start: number; typed: string; before: string } | null {
    const m = this.siteKind.trigger.exec(text);
    if (!m) return null;
    if (this.siteKind.suffix && !this.siteKind.suffix.test(this.suffix)) return null;
    const typed = m[1] ?? '';
    const start = text.length - typed.length;
    return { start, typed, before: text.slice(0, start) };
  }
}
