/**
 * The decode loop and its parts (sampler, stop rules, FIM prompts) against a fake backend whose logits are a pure
 * function of the token history, so every expectation is exact.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import type { Backend, ForwardOptions, KvCache, RowOptions } from '../engine/backends/backend.js';
import { hostRow, topOf, type LogitsRow } from '../engine/backends/logits-row.js';
import type { ModelConfig } from '../engine/model/config.js';
import { buildPrompt } from '../engine/decode/fim.js';
import { generate } from '../engine/decode/generate.js';
import type { LogitsProcessor } from '../engine/decode/logits-processor.js';
import { argmax, createSampler } from '../engine/decode/sampler.js';
import { repetitionCut } from '../engine/decode/repetition.js';
import { StopRules } from '../engine/decode/stop.js';
import { CancelledError, throwIfAborted } from '../engine/errors.js';
import { ensureFixtureModel } from '../engine/model/fixtures.js';
import { openModelDir } from '../engine/model/directory.js';
import { loadTokenizer } from '../engine/tokenizer/tokenizer.js';
import type { TextTokenizer } from '../engine/tokenizer/types.js';

class FakeCache implements KvCache {
  toks: number[] = [];
  truncations: number[] = [];
  get length() {
    return this.toks.length;
  }
  get tokens() {
    return this.toks;
  }
  truncate(n: number) {
    this.truncations.push(n);
    this.toks = this.toks.slice(0, n);
  }
  fork() {
    const c = new FakeCache();
    c.toks = this.toks.slice();
    return c;
  }
  byteSize() {
    return this.toks.length;
  }
  free() {}
}

/** Logits favour `next(history)`; runner-up is `next + 1`. */
class FakeBackend implements Backend {
  readonly config: ModelConfig;
  readonly info = { name: 'onnx' as const, device: 'fake', weights: 'f32' as const, weightBytesPerToken: 0 };
  forwarded: number[][] = [];
  constructor(
    private readonly vocab: number,
    private readonly next: (history: readonly number[]) => number,
  ) {
    this.config = { vocabSize: vocab } as ModelConfig;
  }
  createCache() {
    return new FakeCache();
  }
  async forward(cache: KvCache, tokens: readonly number[], opts: ForwardOptions = {}) {
    throwIfAborted(opts.signal);
    this.forwarded.push([...tokens]);
    (cache as FakeCache).toks.push(...tokens);
    const logits = new Float32Array(this.vocab).fill(-5);
    const n = this.next(cache.tokens);
    logits[n] = 5;
    logits[(n + 1) % this.vocab] = 4;
    return logits;
  }
  async dispose() {}
}

let tok: TextTokenizer;
beforeAll(async () => {
  const m = openModelDir(ensureFixtureModel('tiny'));
  tok = await loadTokenizer(m.tokenizerFile, { tokenizerConfig: m.tokenizerConfig, eosTokenIds: m.generation.eosTokenIds });
});

/** Ids of single-character tokens, for readable scripts. */
async function ids(text: string): Promise<number[]> {
  const out: number[] = [];
  for (const ch of text) out.push(...(await tok.encode(ch)));
  return out;
}

/** A backend that "writes" `script` token by token after the prompt, then EOS. */
function scripted(prompt: number[], script: number[]): FakeBackend {
  const eos = tok.eosIds[0]!;
  return new FakeBackend(tok.vocabSize, (h) => (h.length - prompt.length < script.length ? script[h.length - prompt.length]! : eos));
}

/** The same, with forwardRow (as the WebGPU backend has): counts what the loop asks of its rows. */
class RowBackend extends FakeBackend {
  reads = 0;
  tops: Array<{ k: number; masked: boolean }> = [];
  firstAsked: RowOptions['top'][] = [];
  async forwardRow(cache: KvCache, tokens: readonly number[], opts: RowOptions = {}): Promise<LogitsRow> {
    this.firstAsked.push(opts.top);
    const row = hostRow(await this.forward(cache, tokens, opts));
    return {
      vocabSize: row.vocabSize,
      top: (k, allowed, limit) => (this.tops.push({ k, masked: allowed !== null }), row.top(k, allowed, limit)),
      read: () => (this.reads++, row.read()),
    };
  }
}

function scriptedRows(prompt: number[], script: number[]): RowBackend {
  const eos = tok.eosIds[0]!;
  return new RowBackend(tok.vocabSize, (h) => (h.length - prompt.length < script.length ? script[h.length - prompt.length]! : eos));
}

/** A bitset allowing every id below `n` except `banned`. */
function allBut(n: number, ...banned: number[]): Uint32Array {
  const m = new Uint32Array(Math.ceil(n / 32));
  for (let i = 0; i < n; i++) if (!banned.includes(i)) m[i >>> 5]! |= 1 << (i & 31);
  return m;
}

describe('sampler', () => {
  it('greedy takes the first maximum and skips masked tokens', () => {
    expect(argmax(Float32Array.of(1, 3, 3, -Infinity))).toBe(1);
    expect(createSampler().sample(Float32Array.of(-Infinity, -Infinity))).toBe(-1);
  });
  it('seeded sampling is reproducible, respects top-k/top-p and masks', () => {
    const logits = Float32Array.of(2, 1.9, 0.5, -Infinity, 1.8);
    const draw = (seed: number, o = {}) => {
      const s = createSampler({ temperature: 1, seed, ...o });
      return Array.from({ length: 200 }, () => s.sample(logits));
    };
    expect(draw(7)).toEqual(draw(7));
    expect(draw(7)).not.toEqual(draw(8));
    const many = draw(1);
    expect(new Set(many).has(3)).toBe(false);
    expect(new Set(many).size).toBeGreaterThan(2);
    expect(new Set(draw(2, { topK: 2 }))).toEqual(new Set([0, 1]));
    expect(new Set(draw(3, { topP: 0.01 }))).toEqual(new Set([0]));
  });
});

describe('best tokens of a row (LogitsRow.top on the host)', () => {
  // the reference: sort every allowed, finite id below the limit by logit, ties to the lower id
  const reference = (l: Float32Array, k: number, allowed: Uint32Array | null, limit: number) =>
    Array.from(l.keys())
      .filter((i) => i < limit && l[i]! > -Infinity && (!allowed || (allowed[i >>> 5]! & (1 << (i & 31))) !== 0))
      .sort((a, b) => l[b]! - l[a]! || a - b)
      .slice(0, k);
  it('best first, ties to the lower id, under a mask and a limit', () => {
    let seed = 11;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let trial = 0; trial < 40; trial++) {
      const n = 1 + Math.floor(rand() * 300);
      // few distinct values, so ties are everywhere; some -Infinity (already masked)
      const l = Float32Array.from({ length: n }, () => (rand() < 0.1 ? -Infinity : Math.floor(rand() * 6)));
      const mask = trial % 3 === 0 ? null : Uint32Array.from({ length: Math.ceil(n / 32) }, () => (rand() * 2 ** 32) >>> 0 & ((rand() * 2 ** 32) >>> 0));
      const limit = trial % 4 === 0 ? Math.floor(rand() * n) : n + 5;
      for (const k of [1, 3, 50]) {
        const got = topOf(l, k, mask, limit);
        const want = reference(l, k, mask, limit);
        expect(Array.from(got.ids), `trial ${trial} k ${k}`).toEqual(want);
        expect(Array.from(got.logits)).toEqual(want.map((i) => l[i]!));
      }
    }
  });
  it('a sampler choosing from its best k picks what it picks from the whole masked row', () => {
    let seed = 5;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (const o of [{}, { temperature: 0.7, topK: 5 }, { temperature: 1.3, topK: 40, topP: 0.9 }]) {
      const whole = createSampler({ ...o, seed: 3 });
      const best = createSampler({ ...o, seed: 3 });
      expect(best.topK).toBe((o as { topK?: number }).topK ?? 1);
      for (let t = 0; t < 200; t++) {
        const l = Float32Array.from({ length: 500 }, () => Math.round(rand() * 40) / 4);
        const mask = allBut(500, ...Array.from({ length: 200 }, () => Math.floor(rand() * 500)));
        const masked = l.slice();
        for (let i = 0; i < 500; i++) if (!(mask[i >>> 5]! & (1 << (i & 31)))) masked[i] = -Infinity;
        expect(best.choose(topOf(l, best.topK, mask, 500))).toBe(whole.sample(masked));
      }
    }
    // plain temperature and top-p alone need the whole distribution
    expect(createSampler({ temperature: 1 }).topK).toBe(0);
    expect(createSampler({ temperature: 1, topP: 0.9 }).topK).toBe(0);
  });
});

describe('stop rules', () => {
  it('line mode ends the rest of the line, keeping a leading newline', () => {
    const r = new StopRules({ mode: 'line' });
    expect(r.check('foo()')).toBeNull();
    expect(r.check('foo();\nbar')).toEqual({ reason: 'line', cut: 6 });
    expect(r.check('\n  x\ny')).toEqual({ reason: 'line', cut: 4 });
  });
  it('block mode stays inside the cursor block', () => {
    const r = new StopRules({ mode: 'block', linePrefix: '    ' });
    expect(r.check('sum += c.area();\n    return')).toEqual({ reason: 'block', cut: 16 });
    expect(r.check('sum += 1;\n  }')).toEqual({ reason: 'block', cut: 9 });
    expect(r.check('if (x) {\n      y();\n')).toBeNull();
    expect(r.check('if (x) {\n      y();\n    }')).toBeNull(); // the closing line is still being written
    expect(r.check('if (x) {\n      y();\n    }\n    z')).toEqual({ reason: 'block', cut: 25 });
    expect(r.check('f(a,\n')).toBeNull();
  });
  it('stop strings cut before the first occurrence, across tokens', () => {
    const r = new StopRules({ mode: 'none', stopStrings: ['END', '//'] });
    expect(r.check('abc EN')).toBeNull();
    expect(r.check('abc END x // y')).toEqual({ reason: 'stop-string', cut: 4 });
  });
  it('a loop at the end stops line and block completions, cut to before the loop and one turn of it at most', () => {
    const kept = (t: string) => t.slice(0, repetitionCut(t) ?? t.length);
    // loops the model wrote on the dev set, as they ended at the token limit
    expect(kept('clearImmediate || clearImmediate || clearImmediate || clearImmediate || clearImm')).toBe('clearImmediate');
    expect(kept('error ?? errors ?? errors ?? errors ?? errors ?? errors ?? e')).toBe('error ?? errors');
    expect(kept('repeat(x) || " ".repeat(x) || " ".repeat(x) || " ".repeat(x) ||')).toBe('repeat(x)');
    expect(kept('internalActions, customElements, customElements, customElements, customEleme')).toBe('internalActions, customElements');
    expect(kept('format}" ${received} ${received} ${received} ${received} ${rec')).toBe('format}" ${received}');
    // the phase of the loop that leaves the fewest brackets open: after `]`, not inside `screen[sessionStorage`
    expect(kept('innerType) : screen[s] ?? screen[sessionStorage] ?? screen[sessionStorage] ?? screen[sessionStorage] ??')).toBe('innerType) : screen[s] ?? screen[sessionStorage]');
    expect(kept('settled, initial =>IAM 1234496777777777777777777777777777777777')).toBe('settled, initial =>IAM 1234496');
    // code that repeats on purpose is no loop: numbers in a table, a comment rule, indentation, two alike calls
    for (const t of ['[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]', '// ----------------------------------------', 'a;\n' + ' '.repeat(40), 'push(a);\n    push(a);\n    push(b);', 'x.y.z.w', 'ab ab ab']) {
      expect(repetitionCut(t), t).toBeNull();
    }
    expect(new StopRules({ mode: 'line' }).check('a || b || b || b || b || b || b')).toEqual({ reason: 'repetition', cut: 6 });
    expect(new StopRules({ mode: 'block', linePrefix: '  ' }).check('a || b || b || b || b || b || b')).toEqual({ reason: 'repetition', cut: 6 });
    // 'none' ends only at the limit, EOS or a stop string (what the benchmarks ask for)
    expect(new StopRules({ mode: 'none' }).check('a || b || b || b || b || b || b')).toBeNull();
  });
});

describe('FIM prompts', () => {
  it('Qwen2.5-Coder format with repository context and file header', async () => {
    const p = await buildPrompt(tok, { prefix: 'let a = ', suffix: ';\n', filePath: 'src/a.ts', context: [{ path: 'src/b.ts', text: 'export const b = 1;' }] });
    const f = tok.fim!;
    expect(p.mode).toBe('fim');
    const t = p.tokens;
    expect(t[0]).toBe(f.fileSep);
    expect(tok.decode(t.slice(1, t.indexOf(f.fileSep, 1)))).toBe('src/b.ts\nexport const b = 1;\n');
    const pre = t.indexOf(f.prefix);
    expect(tok.decode(t.slice(t.indexOf(f.fileSep, 1) + 1, pre))).toBe('src/a.ts\n');
    expect(tok.decode(t.slice(pre + 1, t.indexOf(f.suffix)))).toBe('let a = ');
    expect(tok.decode(t.slice(t.indexOf(f.suffix) + 1, -1))).toBe(';\n');
    expect(t.at(-1)).toBe(f.middle);
  });
  it('suffix-prefix-middle order: the same pieces, the suffix first, the prefix running into the middle', async () => {
    const p = await buildPrompt(tok, { prefix: 'let a = ', suffix: ';\n', filePath: 'src/a.ts', fimOrder: 'spm' });
    const f = tok.fim!;
    const t = p.tokens;
    const suf = t.indexOf(f.suffix);
    const pre = t.indexOf(f.prefix);
    expect(tok.decode(t.slice(1, suf))).toBe('src/a.ts\n');
    expect(suf).toBeLessThan(pre);
    expect(tok.decode(t.slice(suf + 1, pre))).toBe(';\n');
    expect(tok.decode(t.slice(pre + 1, -1))).toBe('let a = ');
    expect(t.at(-1)).toBe(f.middle);
    expect(p).toMatchObject({ mode: 'fim', suffixTokens: (await tok.encode(';\n')).length });
  });
  it('joined suffix-prefix-middle order: no <|fim_middle|>, the prompt ends with the prefix the middle continues', async () => {
    const input = { prefix: 'let a = ', suffix: ';\n', filePath: 'src/a.ts', context: [{ path: 'src/b.ts', text: 'export const b = 1;' }] };
    const p = await buildPrompt(tok, { ...input, fimOrder: 'spm-joined' });
    const spm = await buildPrompt(tok, { ...input, fimOrder: 'spm' });
    const f = tok.fim!;
    const t = p.tokens;
    expect(t.includes(f.middle)).toBe(false);
    expect(t).toEqual(spm.tokens.slice(0, -1)); // the same pieces as 'spm', less its <|fim_middle|>
    const suf = t.indexOf(f.suffix);
    const pre = t.indexOf(f.prefix);
    expect(tok.decode(t.slice(suf + 1, pre))).toBe(';\n');
    expect(tok.decode(t.slice(pre + 1))).toBe('let a = ');
    // what later requests share: the header (context, file path) before the first FIM token; the prefix ends the prompt
    expect(p).toMatchObject({ mode: 'fim', headerTokens: suf, prefixEnd: t.length });
    expect(spm.prefixEnd).toBe(t.length);
    const psm = await buildPrompt(tok, input);
    expect(psm.headerTokens).toBe(psm.tokens.indexOf(f.prefix));
    expect(tok.decode(psm.tokens.slice(psm.headerTokens + 1, psm.prefixEnd))).toBe('let a = ');
    expect(psm.tokens[psm.prefixEnd]).toBe(f.suffix);
  });
  it('budgets keep the end of the prefix and the start of the suffix at line boundaries', async () => {
    const prefix = Array.from({ length: 200 }, (_, i) => `line${i}`).join('\n') + '\nlast = ';
    const suffix = 'tail;\n' + Array.from({ length: 200 }, (_, i) => `after${i}`).join('\n');
    const p = await buildPrompt(tok, { prefix, suffix, budget: { prefixTokens: 40, suffixTokens: 20, contextTokens: 0 } });
    expect(p.prefixTokens).toBeLessThanOrEqual(40);
    expect(p.suffixTokens).toBeLessThanOrEqual(20);
    const f = tok.fim!;
    const text = tok.decode(p.tokens.slice(p.tokens.indexOf(f.prefix) + 1, p.tokens.indexOf(f.suffix)));
    expect(text.endsWith('\nlast = ')).toBe(true);
    expect(text).toMatch(/^line\d+\n/);
    const suf = tok.decode(p.tokens.slice(p.tokens.indexOf(f.suffix) + 1, -1));
    expect(suf.startsWith('tail;\n')).toBe(true);
    expect(suf.endsWith('\n')).toBe(true);
  });
});

describe('generate', () => {
  it('greedy: follows the model, stops at EOS, decodes text', async () => {
    const prompt = await tok.encode('x = ');
    const script = await ids('foo(1)');
    const r = await generate(scripted(prompt, script), new FakeCache(), tok, prompt, { maxTokens: 20 });
    expect(r.text).toBe('foo(1)');
    expect(r.stopReason).toBe('eos');
    expect(r.tokens).toEqual(script);
    expect(r.reusedTokens).toBe(0);
  });

  it('max tokens, and the final token is not forwarded', async () => {
    const prompt = await tok.encode('x = ');
    const b = scripted(prompt, await ids('abcdef'));
    const r = await generate(b, new FakeCache(), tok, prompt, { maxTokens: 3 });
    expect(r.text).toBe('abc');
    expect(r.stopReason).toBe('max-tokens');
    expect(b.forwarded.length).toBe(3); // prompt + 2 decode steps: the 3rd token ends the loop unforwarded
  });

  it('a loop ends the decode as soon as it has turned three times, cut back to one turn', async () => {
    const prompt = await tok.encode('x = ');
    const b = scripted(prompt, await ids('a || b' + ' || b'.repeat(40)));
    const r = await generate(b, new FakeCache(), tok, prompt, { maxTokens: 200, stop: { mode: 'line' } });
    expect(r.text).toBe('a || b');
    expect(r.stopReason).toBe('repetition');
    // stopped at the first 24 looping characters, not at the token limit
    expect(r.steps).toBeLessThan(40);
  });

  it('reuses the cached prefix and re-runs the last token when the whole prompt is cached', async () => {
    const prompt = await tok.encode('const a = 1;\nconst b = ');
    const b = scripted(prompt, await ids('2'));
    const cache = new FakeCache();
    cache.toks = [...prompt.slice(0, 5), 9999];
    const r = await generate(b, cache, tok, prompt, { maxTokens: 1 });
    expect(r.reusedTokens).toBe(5);
    expect(cache.truncations).toEqual([5]);
    expect(b.forwarded[0]).toEqual(prompt.slice(5));

    const again = new FakeCache();
    again.toks = prompt.slice();
    const r2 = await generate(scripted(prompt, await ids('2')), again, tok, prompt, { maxTokens: 1 });
    expect(r2.reusedTokens).toBe(prompt.length - 1);
  });

  it('a processor masks the model top choice: counted as an intervention', async () => {
    const prompt = await tok.encode('x = ');
    const script = await ids('aaa');
    const banned = script[0]!;
    const seen: number[] = [];
    const noA: LogitsProcessor = {
      process(logits) {
        logits[banned] = -Infinity;
        return true;
      },
      accept(token) {
        seen.push(token);
      },
    };
    const r = await generate(scripted(prompt, script), new FakeCache(), tok, prompt, { maxTokens: 3, processors: [noA] });
    expect(r.tokens).not.toContain(banned);
    expect(r.tokens[0]).toBe((banned + 1) % tok.vocabSize); // the runner-up
    expect(seen).toEqual(r.tokens);
    expect(r.maskedSteps).toBe(3);
    expect(r.interventions).toBe(3);
  });

  it('masks as bitsets: the same tokens and counts from a row asked for its best token as from the whole row', async () => {
    const prompt = await tok.encode('x = ');
    const script = await ids('abab');
    const [a] = script;
    // allowed(): forbid `a` on steps 0 and 2 (as a monitor would); the vocabulary limit cuts nothing the script needs
    const noA = (): LogitsProcessor => ({ allowed: (st) => (st.step % 2 === 0 ? allBut(tok.vocabSize, a!) : null) });
    const plain = await generate(scripted(prompt, script), new FakeCache(), tok, prompt, { maxTokens: 4, processors: [noA()], vocabLimit: tok.vocabSize - 1 });
    const rows = scriptedRows(prompt, script);
    const onRows = await generate(rows, new FakeCache(), tok, prompt, { maxTokens: 4, processors: [noA()], vocabLimit: tok.vocabSize - 1 });
    expect(onRows.tokens).toEqual(plain.tokens);
    expect(plain.tokens[0]).toBe((a! + 1) % tok.vocabSize); // the runner-up
    expect([onRows.maskedSteps, onRows.interventions]).toEqual([plain.maskedSteps, plain.interventions]);
    expect([plain.maskedSteps, plain.interventions]).toEqual([2, 2]); // steps 0 and 2: the script's `a` forbidden
    // greedy never read a row back: unmasked steps asked for the best token the forward already knew
    expect(rows.reads).toBe(0);
    expect(rows.firstAsked.every((t) => t?.k === 1 && t.limit === tok.vocabSize - 1)).toBe(true);
    expect(rows.tops.filter((t) => t.masked).length).toBe(2);
    // a processor that edits logits (process()) needs the whole row each step
    const boost: LogitsProcessor = { process: () => false };
    const rows2 = scriptedRows(prompt, script);
    const edited = await generate(rows2, new FakeCache(), tok, prompt, { maxTokens: 4, processors: [noA(), boost] });
    expect(edited.tokens).toEqual(plain.tokens);
    expect(rows2.reads).toBe(4);
    expect(rows2.firstAsked.every((t) => t === undefined)).toBe(true);
  });

  it('the vocabulary limit: padded ids past the tokenizer are never chosen', async () => {
    const prompt = await tok.encode('x = ');
    // the model's favourite is the last id: beyond a limit just below it, the runner-up (id 0) wins
    const last = tok.vocabSize - 1;
    for (const backend of [new FakeBackend(tok.vocabSize, () => last), new RowBackend(tok.vocabSize, () => last)]) {
      const r = await generate(backend, new FakeCache(), tok, prompt, { maxTokens: 1, vocabLimit: last, stop: { mode: 'none', eos: false } });
      expect(r.tokens).toEqual([0]);
      expect([r.maskedSteps, r.interventions]).toEqual([0, 0]);
    }
  });

  it('everything masked ends the completion cleanly', async () => {
    const prompt = await tok.encode('x');
    const all: LogitsProcessor = { process: (l) => (l.fill(-Infinity), true) };
    const r = await generate(scripted(prompt, await ids('a')), new FakeCache(), tok, prompt, { maxTokens: 3, processors: [all] });
    expect(r.stopReason).toBe('masked-out');
    expect(r.text).toBe('');
  });

  it('cancellation is a value: partial result, stopReason cancelled', async () => {
    const prompt = await tok.encode('x = ');
    const ac = new AbortController();
    const chunks: string[] = [];
    const r = await generate(scripted(prompt, await ids('abcdefgh')), new FakeCache(), tok, prompt, {
      maxTokens: 20,
      signal: ac.signal,
      onText: (d) => {
        chunks.push(d);
        if (chunks.length === 2) ac.abort();
      },
    });
    expect(r.stopReason).toBe('cancelled');
    expect(r.text).toBe('ab');
    ac.abort();
    const before = await generate(scripted(prompt, await ids('a')), new FakeCache(), tok, prompt, { maxTokens: 5, signal: ac.signal });
    expect(before.stopReason).toBe('cancelled');
    expect(new CancelledError()).toBeInstanceOf(Error);
  });

  it('streams whole characters even when a token is a partial UTF-8 sequence', async () => {
    const prompt = await tok.encode('s = ');
    const script = await ids('é🚀'); // byte-level: é is 2 byte tokens, 🚀 is 4
    expect(script.length).toBeGreaterThan(2);
    const chunks: string[] = [];
    const r = await generate(scripted(prompt, script), new FakeCache(), tok, prompt, { maxTokens: 20, onText: (d) => chunks.push(d) });
    expect(r.text).toBe('é🚀');
    expect(chunks).toEqual(['é', '🚀']);
  });

  it('block stop trims the completion at the end of the block', async () => {
    const prompt = await tok.encode('  x = ');
    const r = await generate(scripted(prompt, await ids('1;\n  y = 2;')), new FakeCache(), tok, prompt, { maxTokens: 30, stop: { mode: 'block', linePrefix: '  x = ' } });
    expect(r.text).toBe('1;');
    expect(r.stopReason).toBe('block');
  });
});

describe('generate: forced tokens, settling, branch points', () => {
  it('fast-forward: a forced continuation is appended without a model step and counted', async () => {
    const prompt = await tok.encode('x.');
    // the model would write "zz"; a processor forces "ab" at step 0, then the model goes on
    const b = scripted(prompt, await ids('zzzzzz'));
    let forcedOnce = false;
    const forcer: LogitsProcessor = {
      forced: () => (forcedOnce ? null : ((forcedOnce = true), 'ab')),
    };
    const r = await generate(b, new FakeCache(), tok, prompt, { maxTokens: 4, processors: [forcer] });
    expect(r.text.startsWith('ab')).toBe(true);
    expect(r.forcedTokens).toBe((await tok.encode('ab')).length);
    expect(r.tokens.length).toBe(4);
    // the forced tokens were forwarded in one call, not one model step each
    expect(b.forwarded[1]).toEqual(await tok.encode('ab'));
  });

  it('settle: a processor finishes or cuts back the end of the text', async () => {
    const prompt = await tok.encode('x.');
    const finish: LogitsProcessor = { settle: (text) => (text.endsWith('la') ? { append: 'stUpdated' } : null) };
    const r = await generate(scripted(prompt, await ids('lastUpda')), new FakeCache(), tok, prompt, { maxTokens: 2, processors: [finish] });
    expect(r.text).toBe('lastUpdated');
    const cut: LogitsProcessor = { settle: () => ({ cut: 1 }) };
    const r2 = await generate(scripted(prompt, await ids('a bcd')), new FakeCache(), tok, prompt, { maxTokens: 3, processors: [cut] });
    expect(r2.text).toBe('a');
    // a suggestion that ended on its own (EOS) is left as it is
    const r3 = await generate(scripted(prompt, await ids('ab')), new FakeCache(), tok, prompt, { maxTokens: 9, processors: [cut] });
    expect(r3.text).toBe('ab');
  });

  it('branch points record the runner-up, and continueFrom resumes a decode from a branch', async () => {
    const prompt = await tok.encode('x = ');
    const script = await ids('abc');
    const r = await generate(scripted(prompt, script), new FakeCache(), tok, prompt, { maxTokens: 3, branches: true });
    expect(r.branches.map((p) => p.step)).toEqual([0, 1, 2]);
    expect(r.branches[1]!.alt).toBe((script[1]! + 1) % tok.vocabSize); // the fake backend's runner-up
    expect(r.branches[1]!.margin).toBeCloseTo(1);
    // resume after "a" with the runner-up of step 1: the text starts with both, the model goes on from there
    const taken = [script[0]!, r.branches[1]!.alt];
    const b = scripted(prompt, script);
    const alt = await generate(b, new FakeCache(), tok, prompt, { maxTokens: 3, continueFrom: taken });
    expect(alt.tokens.slice(0, 2)).toEqual(taken);
    expect(alt.tokens.length).toBe(3);
    expect(alt.text.startsWith(tok.decode(taken))).toBe(true);
    expect(b.forwarded[0]).toEqual([...prompt, ...taken]);
  });
});

describe('FIM spellings of other model families', () => {
  it('StarCoder tokens (<fim_prefix>...) are detected and used; a vocabulary without FIM falls back to a plain prefix', async () => {
    const { makeTinyTokenizerJson } = await import('../engine/model/tiny-tokenizer.js');
    const fs = await import('node:fs');
    const os = await import('node:os');
    const path = await import('node:path');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mgd-fim-'));
    try {
      const star = makeTinyTokenizerJson() as { added_tokens: Array<{ content: string }> };
      const rename: Record<string, string> = { '<|fim_prefix|>': '<fim_prefix>', '<|fim_suffix|>': '<fim_suffix>', '<|fim_middle|>': '<fim_middle>', '<|file_sep|>': '<file_sep>' };
      for (const t of star.added_tokens) t.content = rename[t.content] ?? t.content;
      fs.writeFileSync(path.join(dir, 'star.json'), JSON.stringify(star));
      const s = await loadTokenizer(path.join(dir, 'star.json'));
      expect(s.fim?.style).toBe('starcoder');
      const p = await buildPrompt(s, { prefix: 'a = ', suffix: ';' });
      expect(p.tokens[0]).toBe(s.tokenId('<fim_prefix>'));
      expect(p.tokens.at(-1)).toBe(s.tokenId('<fim_middle>'));

      const plain = makeTinyTokenizerJson() as { added_tokens: Array<{ content: string }> };
      plain.added_tokens = plain.added_tokens.filter((t) => t.content === '<|endoftext|>');
      fs.writeFileSync(path.join(dir, 'plain.json'), JSON.stringify(plain));
      const n = await loadTokenizer(path.join(dir, 'plain.json'));
      expect(n.fim).toBeNull();
      const q = await buildPrompt(n, { prefix: 'let a = ', suffix: 'ignored', context: [{ path: 'b.ts', text: 'export const b = 1;' }] });
      expect(q.mode).toBe('prefix');
      expect(n.decode(q.tokens)).toBe('// b.ts\n// export const b = 1;\n\nlet a = ');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('token healing', () => {
  it('leaves the trailing `.` out of the prompt, makes the first token start with it, and strips it from the output', async () => {
    const { TokenMasks } = await import('../engine/decode/mask/token-mask.js');
    const { VocabTrie } = await import('../engine/decode/mask/vocab-trie.js');
    const p = await buildPrompt(tok, { prefix: 'let n = items.', suffix: '', heal: true });
    expect(p.healed).toBe('.');
    const plain = await buildPrompt(tok, { prefix: 'let n = items.', suffix: '' });
    expect(p.tokens.length).toBe(plain.tokens.length - 1);
    // with a predicate, only what it accepts is healed
    expect((await buildPrompt(tok, { prefix: 'let n = new ', suffix: '', heal: (t) => t === '.' })).healed).toBe('');

    const masks = new TokenMasks(new VocabTrie((id) => tok.tokenBytes(id), tok.vocabSize));
    const allowed = masks.startingWith(new TextEncoder().encode('.'));
    // a model that would rather write 'x' first: healing forces a token starting with '.'
    const script = await ids('xlength;');
    const b = new FakeBackend(tok.vocabSize, (h) => (h.length - p.tokens.length < script.length ? script[h.length - p.tokens.length]! : tok.eosIds[0]!));
    const r = await generate(b, new FakeCache(), tok, p.tokens, { maxTokens: 4, heal: { text: '.', allowed } });
    const first = tok.decode([r.tokens[0]!]);
    expect(first.startsWith('.')).toBe(true);
    expect(r.text.startsWith('.')).toBe(false);
    expect('.' + r.text).toBe(tok.decode(r.tokens));
  });
});
