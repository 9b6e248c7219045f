/**
 * `mgd bench cache`: a typing session against the managed KV cache with repository context in the prompt.
 *
 * A generated workspace (modules of classes the edited file imports) gives >= 2k tokens of retrieved context. A
 * function is typed into the edited file one character per request, as an editor sends them; every 50 keystrokes
 * the user looks at another file for a few requests and comes back, which the resident sequence cannot serve and
 * the prefix cache can. Reported: the fraction of prompt tokens served from the cache, time to first logits
 * (prefill) cold and on hits with the new tokens each hit had to compute, the prefix cache's lookup + gather time,
 * and bytes held against the budget.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Engine } from '../engine.js';
import { randomModelDir } from './decode.js';

export interface BenchCacheOptions {
  model?: string;
  keystrokes?: number;
  threads?: number;
  contextTokens?: number;
  log?: (line: string) => void;
}

function makeWorkspace(dir: string, modules: number): { edited: string; other: string } {
  fs.mkdirSync(path.join(dir, 'src'), { recursive: true });
  const imports: string[] = [];
  for (let m = 0; m < modules; m++) {
    const methods = Array.from({ length: 6 }, (_, k) => `  /** Step ${k} of the ${m} pipeline. */\n  step${k}(input: Record${m}, limit: number): Record${m}[] {\n    return [input].slice(0, limit);\n  }`).join('\n');
    fs.writeFileSync(path.join(dir, 'src', `module${m}.ts`), `export interface Record${m} {\n  id: number;\n  label: string;\n  weight${m}: number;\n}\n\nexport class Service${m} {\n${methods}\n}\n`);
    imports.push(`import { Service${m}, type Record${m} } from './module${m}.js';`);
  }
  const body = Array.from({ length: 30 }, (_, i) => `export function helper${i}(s: Service${i % modules}, r: Record${i % modules}): number {\n  return s.step${i % 6}(r, ${i}).length;\n}`).join('\n\n');
  fs.writeFileSync(path.join(dir, 'src', 'main.ts'), `${imports.join('\n')}\n\n${body}\n`);
  fs.writeFileSync(path.join(dir, 'src', 'other.ts'), `${imports.slice(0, 3).join('\n')}\n\nexport const answer = 42;\n`);
  return { edited: 'src/main.ts', other: 'src/other.ts' };
}

const TYPED = `\nexport function total(services: Service0[], records: Record0[]): number {\n  let sum = 0;\n  for (const s of services) {\n    for (const r of records) sum += s.step1(r, 3).length + r.weight0;\n  }\n  return sum;\n}\n`;

export async function benchCache(o: BenchCacheOptions = {}) {
  const log = o.log ?? (() => {});
  const dir = o.model ?? randomModelDir('tiny-long', log);
  const keystrokes = o.keystrokes ?? 240;
  const ws = fs.mkdtempSync(path.join(os.tmpdir(), 'mgd-cache-bench-'));
  const engine = await Engine.load({ model: dir, threads: o.threads });
  try {
    const { edited, other } = makeWorkspace(ws, 12);
    await engine.indexWorkspace(ws);
    const base = fs.readFileSync(path.join(ws, edited), 'utf8');
    const otherText = fs.readFileSync(path.join(ws, other), 'utf8');
    const rows: { prompt: number; reused: number; prefillMs: number; source: string; spliceMs: number; context: number }[] = [];
    const ask = async (file: string, prefix: string, suffix: string) => {
      const r = await engine.complete({ prefix, suffix, filePath: file, workspace: ws, monitors: false, maxTokens: 1, stop: 'none', contextTokens: o.contextTokens ?? 2400 });
      rows.push({ prompt: r.promptTokens, reused: r.cache.reusedTokens, prefillMs: r.timings.prefillMs, source: r.cache.source, spliceMs: r.cache.spliceMs, context: r.context.tokens });
    };
    log(`replaying ${keystrokes} keystrokes ...`);
    for (let k = 0; k < keystrokes; k++) {
      const typed = TYPED.repeat(Math.ceil(keystrokes / TYPED.length) + 1).slice(0, k + 1);
      await ask(edited, base + typed, '\n');
      if (k % 50 === 49) {
        // a look at another file, then back
        for (let j = 0; j < 3; j++) await ask(other, otherText + 'export const x = answer'.slice(0, 10 + j), '\n');
      }
    }
    const cold = rows[0]!;
    const hits = rows.slice(1).filter((r) => r.reused > 0);
    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    const pct = (xs: number[], p: number) => {
      const s = xs.slice().sort((a, b) => a - b);
      return round(s[Math.min(s.length - 1, Math.floor(s.length * p))] ?? 0);
    };
    const fromTree = rows.filter((r) => r.source === 'prefix-cache');
    const kv = engine.kvStats();
    return {
      bench: 'cache',
      model: dir,
      keystrokes,
      requests: rows.length,
      contextTokensP50: pct(rows.map((r) => r.context), 0.5),
      promptTokensP50: pct(rows.map((r) => r.prompt), 0.5),
      reusedFraction: round(sum(rows.slice(1).map((r) => r.reused)) / sum(rows.slice(1).map((r) => r.prompt))),
      coldPrefillMs: round(cold.prefillMs),
      coldPromptTokens: cold.prompt,
      hitPrefillP50Ms: pct(hits.map((r) => r.prefillMs), 0.5),
      hitPrefillP95Ms: pct(hits.map((r) => r.prefillMs), 0.95),
      hitNewTokensP50: pct(hits.map((r) => r.prompt - r.reused), 0.5),
      hitNewTokensP95: pct(hits.map((r) => r.prompt - r.reused), 0.95),
      prefixCacheServed: fromTree.length,
      prefixCachePrefillP50Ms: pct(fromTree.map((r) => r.prefillMs), 0.5),
      lookupSpliceP50Ms: pct(rows.map((r) => r.spliceMs), 0.5),
      lookupSpliceP99Ms: pct(rows.map((r) => r.spliceMs), 0.99),
      spliceOnGatherP50Ms: pct(fromTree.map((r) => r.spliceMs), 0.5),
      bytesHeld: kv.bytes + kv.residentBytes,
      budgetBytes: kv.budgetBytes,
      blocks: kv.blocks,
      evictedBlocks: kv.evictedBlocks,
    };
  } finally {
    await engine.dispose();
    fs.rmSync(ws, { recursive: true, force: true });
  }
}

function round(x: number): number {
  return Math.round(x * 1000) / 1000;
}
