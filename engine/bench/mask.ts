/**
 * `mgd bench mask`: the cost of a monitor's mask per decoding step with the real Qwen2 vocabulary (151k tokens).
 * Trigger steps build a mask for a fresh member set (cache miss, nothing typed yet); continuation steps narrow it
 * by a typed prefix (cache miss); both then apply the mask to a logits vector. Percentiles in microseconds, for
 * 10, 100 and 1,000 legal members. Also the type oracle's latency at a dot in a >= 50k-line workspace (oracle.ts).
 */
import { applyMask, TokenMasks } from '../decode/mask/token-mask.js';
import { VocabTrie } from '../decode/mask/vocab-trie.js';
import { ensureFixtureModel } from '../model/fixtures.js';
import { openModelDir } from '../model/directory.js';
import { loadTokenizer } from '../tokenizer/tokenizer.js';
import { benchOracle } from './oracle.js';
import { typescriptNativeServer } from '../analysis/language-servers.js';

export async function benchMask(o: { steps?: number; model?: string } = {}) {
  const steps = o.steps ?? 200;
  const m = openModelDir(o.model ?? ensureFixtureModel('qwen-vocab'));
  const tok = await loadTokenizer(m.tokenizerFile, { tokenizerConfig: m.tokenizerConfig });
  const t0 = performance.now();
  const trie = new VocabTrie((id) => tok.tokenBytes(id), tok.vocabSize);
  const trieBuildMs = performance.now() - t0;

  // Plausible member names: camelCase pairs of lowercase word tokens from the vocabulary, deterministic.
  const words: string[] = [];
  for (let id = 0; id < tok.vocabSize && words.length < 4000; id++) {
    const s = tok.decode([id]);
    if (/^[a-z]{3,10}$/.test(s)) words.push(s);
  }
  let seed = 12345;
  const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
  const pick = () => words[Math.floor(rand() * words.length)]!;
  const name = () => pick() + pick().replace(/^./, (c) => c.toUpperCase());

  const logits = new Float32Array(tok.vocabSize);
  const result: Record<string, unknown> = { bench: 'mask', vocabSize: tok.vocabSize, trieNodes: trie.nodeCount, trieBuildMs: round(trieBuildMs), steps };
  for (const count of [10, 100, 1000]) {
    const trigger: number[] = [];
    const cont: number[] = [];
    const apply: number[] = [];
    for (let s = 0; s < steps; s++) {
      const masks = new TokenMasks(trie); // fresh cache: every measured step is a miss
      const names = Array.from({ length: count }, name);
      let t = performance.now();
      const bits = masks.allowed(names, '');
      trigger.push((performance.now() - t) * 1000);
      const target = names[Math.floor(rand() * names.length)]!;
      t = performance.now();
      masks.allowed(names, target.slice(0, 1 + Math.floor(rand() * (target.length - 1))));
      cont.push((performance.now() - t) * 1000);
      logits.fill(0);
      t = performance.now();
      applyMask(logits, bits);
      apply.push((performance.now() - t) * 1000);
    }
    result[`members${count}`] = {
      triggerP50Us: pct(trigger, 0.5),
      triggerP99Us: pct(trigger, 0.99),
      continuationP50Us: pct(cont, 0.5),
      continuationP99Us: pct(cont, 0.99),
      applyP50Us: pct(apply, 0.5),
      applyP99Us: pct(apply, 0.99),
      maskP99Us: pct(trigger.map((x, i) => x + apply[i]!), 0.99),
    };
  }
  // the in-process service and, where installed, TypeScript 7's native server on the same sites
  result.oracle = await benchOracle({ languageServer: typescriptNativeServer() ?? undefined });
  return result;
}

function pct(xs: number[], p: number): number {
  const s = xs.slice().sort((a, b) => a - b);
  return round(s[Math.min(s.length - 1, Math.floor(s.length * p))]!);
}

function round(x: number): number {
  return Math.round(x * 10) / 10;
}
