/**
 * llama.cpp (node-llama-cpp) as the yardstick in GGUF tests: its logits at every position, the prompts both sides
 * run, and the comparison of quantized logits that allows for near ties.
 */
import { expect } from 'vitest';
import type { Llama } from '../../engine/peers/node-llama-cpp.js';

export const argmax = (a: ArrayLike<number>) => {
  let b = 0;
  for (let i = 1; i < a.length; i++) if (a[i]! > a[b]!) b = i;
  return b;
};

export const PROMPTS = [
  'export function sum(values: number[]): number {\n  let total = 0;\n  for (const value of values) {',
  "import { readFile } from 'node:fs/promises';\nconst text = await readFile(path, 'utf8');",
  'const items = new Map<string, number>(); // ünïcödé, émoji 🎉,\ttabs',
];
export const GREEDY_TOKENS = 24;

/** transformers' clean_up_tokenization, which llama.cpp's llama_detokenize applies for most BPE pre-tokenizers. */
export function cleanUpTokenizationSpaces(s: string): string {
  return s
    .replaceAll(' .', '.')
    .replaceAll(' ?', '?')
    .replaceAll(' !', '!')
    .replaceAll(' ,', ',')
    .replaceAll(" ' ", "'")
    .replaceAll(" n't", "n't")
    .replaceAll(" 'm", "'m")
    .replaceAll(" 's", "'s")
    .replaceAll(" 've", "'ve")
    .replaceAll(" 're", "'re");
}

/** llama.cpp's logits for every position of `ids`, [n][V]. */
export async function llamaLogits(llama: Llama, file: string, ids: number[], V: number): Promise<Float32Array> {
  const model = await llama.loadModel({ modelPath: file });
  // flash attention off and an f32 KV cache: the f32 path end to end (see the header comment). One thread: the
  // fixtures are tiny, and llama.cpp's spinning thread barrier crawls when the machine is oversubscribed.
  const ctx = await model.createContext({ contextSize: 256, threads: 1, flashAttention: false, experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32' } as never);
  try {
    const seq = ctx.getSequence() as unknown as { controlledEvaluate(input: unknown[]): Promise<Array<{ next: { logits: Map<number, number> } }>> };
    const out = await seq.controlledEvaluate(ids.map((id) => [id, { generateNext: { logits: true } }]));
    const all = new Float32Array(ids.length * V);
    out.forEach((o, p) => {
      for (const [k, v] of o.next.logits) all[p * V + k] = v;
    });
    return all;
  } finally {
    await ctx.dispose();
    await model.dispose();
  }
}


/**
 * Quantized logits `b` against reference logits `a` ([n][V]): each position's largest difference δ bounded by
 * 0.1 (1 + max |logit|); where top-1 differs, the reference's top-2 margin is within 2δ (a near tie); and top-1
 * agrees at `minAgreement` of positions at least (a layout bug gives chance, 1/V).
 */
export function expectTopOneAgreement(a: Float32Array, b: Float32Array, V: number, minAgreement = 0.8): void {
  const n = a.length / V;
  let agree = 0;
  for (let p = 0; p < n; p++) {
    const x = a.subarray(p * V, (p + 1) * V);
    const y = b.subarray(p * V, (p + 1) * V);
    let delta = 0;
    let scale = 0;
    for (let i = 0; i < V; i++) {
      delta = Math.max(delta, Math.abs(x[i]! - y[i]!));
      scale = Math.max(scale, Math.abs(x[i]!));
    }
    expect(delta).toBeLessThanOrEqual(0.1 * (1 + scale));
    const [tx, ty] = [argmax(x), argmax(y)];
    if (tx === ty) agree++;
    else expect(x[tx]! - x[ty]!).toBeLessThanOrEqual(2 * delta);
  }
  expect(agree / n).toBeGreaterThanOrEqual(minAgreement);
}
