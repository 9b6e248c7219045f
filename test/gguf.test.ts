/**
 * GGUF export: the file's structure, then llama.cpp (node-llama-cpp, installed on demand into the cache) running the
 * exported fixture models against our ONNX Runtime backend on the same weights.
 *
 * Tolerances.
 * - f32: max |logit(llama.cpp) - logit(ORT)| <= 1e-4 * (1 + max |logit|), the bound the ORT backend meets against
 *   the float64 reference. llama.cpp runs here with flash attention off and an f32 KV cache: its defaults (flash
 *   attention converting Q to f16, an f16 KV cache) move logits by ~2e-3 relative, which is llama.cpp's choice, not an
 *   export error. Measured: <= 7e-6 on all three fixtures. A wrong RoPE pairing, head mapping or tokenizer moves
 *   logits by > 1e-1.
 * - q8_0: llama.cpp quantizes weights (f16 block scales) and activations (q8_0 too, for the dot products), so logits
 *   move by δ (measured 0.2-0.3 on logits of magnitude ~5). Its top-1 may then differ from f32's only where f32's
 *   top-2 margin is within 2δ at that position (a near tie): that is checked per position, with δ itself bounded by
 *   0.1 * (1 + max |logit|), and at least 80% top-1 agreement overall (measured 92-100%; a layout bug gives chance,
 *   1/422).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadOnnxBackend, type OnnxBackend } from '../engine/backends/onnx/onnx-backend.js';
import { BadInputError } from '../engine/errors.js';
import { openModelDir, type ModelDir } from '../engine/model/directory.js';
import { ensureFixtureModel } from '../engine/model/fixtures.js';
import { exportGguf, permuteRope } from '../engine/model/gguf.js';
import { GGML_TYPES, quantize } from '../engine/model/gguf-quants.js';
import { readGgufHeader } from '../engine/model/gguf-read.js';
import { ggufTokenizer, TOKEN_CONTROL, TOKEN_NORMAL, TOKEN_UNUSED, TOKEN_USER_DEFINED } from '../engine/model/gguf-tokenizer.js';
import { getCpuLlama, loadNodeLlamaCpp, type Llama } from '../engine/peers/node-llama-cpp.js';
import { expectClose } from './numeric.js';
import { argmax, cleanUpTokenizationSpaces, expectTopOneAgreement, GREEDY_TOKENS, llamaLogits, PROMPTS } from './helpers/llama-cpp.js';
import { loadTokenizer, type TextTokenizer } from '../engine/tokenizer/tokenizer.js';
import { main } from '../server/cli.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mgd-gguf-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));


describe('gguf file', () => {
  it.each(['f32', 'f16', 'q8_0'] as const)('tiny as %s: header, tensor types, dims, aligned offsets, size', (type) => {
    const r = exportGguf(ensureFixtureModel('tiny'), path.join(tmp, `tiny-${type}.gguf`), type);
    const h = readGgufHeader(r.file);
    expect(h.version).toBe(3);
    expect(h.metadata.get('general.architecture')).toBe('qwen2');
    expect(h.metadata.get('qwen2.block_count')).toBe(2);
    expect(h.metadata.get('tokenizer.ggml.model')).toBe('gpt2');
    expect(h.metadata.get('tokenizer.ggml.pre')).toBe('gpt-2');
    expect((h.metadata.get('tokenizer.ggml.tokens') as string[]).length).toBe(r.vocabSize);
    const byName = new Map(h.tensors.map((t) => [t.name, t]));
    const big = type === 'f32' ? GGML_TYPES.F32 : type === 'f16' ? GGML_TYPES.F16 : GGML_TYPES.Q8_0;
    expect(byName.get('token_embd.weight')).toMatchObject({ ne: [64, r.vocabSize], type: big });
    expect(byName.get('blk.0.attn_k.weight')).toMatchObject({ ne: [64, 32], type: big });
    expect(byName.get('blk.0.attn_q.bias')).toMatchObject({ ne: [64], type: GGML_TYPES.F32 });
    expect(byName.get('output_norm.weight')!.type).toBe(GGML_TYPES.F32);
    expect(byName.has('output.weight')).toBe(true); // tiny does not tie embeddings
    for (const t of h.tensors) expect(t.offset % 32).toBe(0);
    expect(h.dataStart % 32).toBe(0);
    expect(fs.statSync(r.file).size).toBe(r.bytes);
  });

  it('tied embeddings write no output.weight; llama writes linear RoPE scaling', () => {
    const h = readGgufHeader(exportGguf(ensureFixtureModel('tiny-llama'), path.join(tmp, 'tl.gguf'), 'f32').file);
    expect(h.metadata.get('general.architecture')).toBe('llama');
    expect(h.tensors.some((t) => t.name === 'output.weight')).toBe(false);
    expect(h.metadata.get('llama.rope.scaling.type')).toBe('linear');
    expect(h.metadata.get('llama.rope.scaling.factor')).toBe(2);
  });

  it('q8_0 blocks: scale absmax/127 as f16, codes rounded half away from zero', () => {
    const x = new Float32Array(32);
    x[0] = 127;
    x[1] = -127;
    x[2] = 2.5;
    x[3] = -2.5;
    x[4] = 0.4;
    const q = quantize(GGML_TYPES.Q8_0, x);
    expect(q.length).toBe(34);
    expect(new DataView(q.buffer).getUint16(0, true)).toBe(0x3c00); // 1.0 in f16
    expect(Array.from(new Int8Array(q.buffer, 2, 5))).toEqual([127, -127, 3, -3, 0]);
    expect(Array.from(quantize(GGML_TYPES.Q8_0, new Float32Array(32)))).toEqual(new Array(34).fill(0));
  });

  it('RoPE permutation: per head, halves become interleaved pairs (rows and biases)', () => {
    // 2 heads of width 4, 1 column: head rows [a0 a1 | b0 b1] -> [a0 b0 a1 b1]
    expect(Array.from(permuteRope(Float32Array.of(0, 1, 2, 3, 10, 11, 12, 13), 2, 8))).toEqual([0, 2, 1, 3, 10, 12, 11, 13]);
    expect(Array.from(permuteRope(Float32Array.of(0, 0, 1, 1, 2, 2, 3, 3), 1, 4))).toEqual([0, 0, 2, 2, 1, 1, 3, 3]);
  });

  it('tokenizer: byte-level tokens as spelled, added tokens by kind, missing ids padded and unused', () => {
    const json = JSON.parse(fs.readFileSync(path.join(ensureFixtureModel('qwen-vocab'), 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
    const tok = ggufTokenizer(json, 151936);
    expect(tok.pre).toBe('qwen2');
    expect(tok.tokens[220]).toBe('Ġ');
    expect(tok.types[220]).toBe(TOKEN_NORMAL);
    const id = (s: string) => tok.tokens.indexOf(s);
    expect(tok.types[id('<|endoftext|>')]).toBe(TOKEN_CONTROL);
    expect(tok.types[id('<|fim_prefix|>')]).toBe(TOKEN_CONTROL); // not "special" in tokenizer.json, but looks it
    expect(tok.types[id('<tool_call>')]).toBe(TOKEN_USER_DEFINED);
    expect(tok.tokens[151935]).toBe('[PAD151935]');
    expect(tok.types[151935]).toBe(TOKEN_UNUSED);
    expect(tok.merges[0]).toBe('Ġ Ġ');
  });

  it('mgd model export-gguf: JSON summary; a bad --type is bad input (exit 2)', async () => {
    let stdout = '';
    let stderr = '';
    const io = { stdout: (s: string) => (stdout += s), stderr: (s: string) => (stderr += s) };
    const file = path.join(tmp, 'cli.gguf');
    expect(await main(['model', 'export-gguf', ensureFixtureModel('tiny-llama'), '--out', file, '--type', 'q8_0', '--json'], io)).toBe(0);
    expect(JSON.parse(stdout)).toMatchObject({ file, architecture: 'llama', type: 'q8_0', bytes: fs.statSync(file).size });
    expect(await main(['model', 'export-gguf', ensureFixtureModel('tiny'), '--out', file, '--type', 'q3'], io)).toBe(2);
    expect(stderr).toMatch(/--type must be one of f32, f16, bf16, q8_0, q4_0/);
  });

  it('refuses what llama.cpp could not tokenize the same way', () => {
    expect(() => ggufTokenizer({ model: { type: 'Unigram', vocab: [] } }, 10)).toThrow(BadInputError);
    const split = { type: 'Split', pattern: { Regex: '\\w+' } };
    expect(() => ggufTokenizer({ model: { type: 'BPE', vocab: {} }, pre_tokenizer: { type: 'Sequence', pretokenizers: [split, { type: 'ByteLevel', use_regex: false }] } }, 10)).toThrow(/not one llama.cpp knows/);
    expect(() => ggufTokenizer({ model: { type: 'BPE', vocab: { a: 12 } }, pre_tokenizer: { type: 'ByteLevel' } }, 10)).toThrow(/outside the model's vocabulary/);
    expect(() => exportGguf(ensureFixtureModel('tiny'), path.join(tmp, 'x.gguf'), 'q4' as never)).toThrow(BadInputError);
  });
});

// ---- llama.cpp on the exported models

const peer = await loadNodeLlamaCpp();
if (!peer.ok) console.warn(`gguf.test: llama.cpp comparisons skipped: ${peer.reason}`);

describe.skipIf(!peer.ok).each(['tiny', 'tiny-llama', 'qwen-vocab'] as const)(`llama.cpp on the exported %s${peer.ok ? '' : ` (skipped: ${peer.reason})`}`, (name) => {
  let llama: Llama;
  let md: ModelDir;
  let tok: TextTokenizer;
  let ort: OnnxBackend;
  const files: Record<string, string> = {};

  beforeAll(async () => {
    if (!peer.ok) return;
    llama = await getCpuLlama(peer.module);
    md = openModelDir(ensureFixtureModel(name));
    tok = await loadTokenizer(md.tokenizerFile, { tokenizerConfig: md.tokenizerConfig, eosTokenIds: md.generation.eosTokenIds, bosTokenId: md.generation.bosTokenId });
    ort = await loadOnnxBackend(md, { weights: 'f32' });
    for (const type of ['f32', 'q8_0'] as const) files[type] = exportGguf(md.dir, path.join(tmp, `${name}-${type}.gguf`), type).file;
  });
  afterAll(async () => {
    await ort?.dispose();
  });

  it('tokenizes like our tokenizer', async () => {
    const model = await llama.loadModel({ modelPath: files.f32! });
    try {
      for (const p of PROMPTS) expect(model.tokenize(p), p).toEqual(await tok.encode(p));
    } finally {
      await model.dispose();
    }
  });

  it('f32: logits at every position match the ORT backend', async () => {
    const V = md.config.vocabSize;
    for (const p of PROMPTS.slice(0, 2)) {
      const ids = await tok.encode(p);
      const ours = await ort.forward(ort.createCache(), ids, { logitsFor: ids.length });
      expectClose(await llamaLogits(llama, files.f32!, ids, V), ours, 1e-4);
    }
  });

  it('f32: greedy text from llama.cpp equals greedy text from the ORT backend', async () => {
    const model = await llama.loadModel({ modelPath: files.f32! });
    const ctx = await model.createContext({ contextSize: 256, threads: 1, flashAttention: false, experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32' } as never);
    try {
      for (const p of PROMPTS.slice(0, 2)) {
        const ids = await tok.encode(p);
        const ours: number[] = [];
        const cache = ort.createCache();
        let logits = await ort.forward(cache, ids);
        while (ours.length < GREEDY_TOKENS) {
          ours.push(argmax(logits));
          logits = await ort.forward(cache, [ours.at(-1)!]);
        }
        const seq = ctx.getSequence();
        const theirs: number[] = [];
        for await (const t of seq.evaluate(model.tokenize(p), { temperature: 0 })) if (theirs.push(t) >= GREEDY_TOKENS) break;
        seq.dispose();
        expect(theirs).toEqual(ours);
        // llama.cpp's detokenizer applies clean_up_tokenization_spaces for the gpt-2 pre-tokenizer (not for qwen2)
        const text = tok.decode(ours);
        expect(model.detokenize(theirs)).toBe(name === 'qwen-vocab' ? text : cleanUpTokenizationSpaces(text));
      }
    } finally {
      await ctx.dispose();
      await model.dispose();
    }
  });

  it('q8_0: top-1 agrees with f32 except at near ties', async () => {
    const V = md.config.vocabSize;
    const ids = await tok.encode(PROMPTS[0]!);
    const f32 = await ort.forward(ort.createCache(), ids, { logitsFor: ids.length });
    expectTopOneAgreement(f32, await llamaLogits(llama, files.q8_0!, ids, V), V);
  });
});

describe.skipIf(!peer.ok)(`mgd bench decode --peer llamacpp${peer.ok ? '' : ` (skipped: ${peer.reason})`}`, () => {
  it('times both engines on the same weights, f32 and q8 against q8_0, with ratios', async () => {
    const { benchDecodePeer } = await import('../engine/bench/decode-peer.js');
    const r = await benchDecodePeer({ model: ensureFixtureModel('tiny'), threads: 1, promptTokens: 16, decodeTokens: 4 });
    expect(r.runs.map((x) => [x.weights, x.ggufType])).toEqual([
      ['f32', 'f32'],
      ['q8', 'q8_0'],
    ]);
    for (const run of r.runs) {
      expect(run.ours.decodeTokPerS).toBeGreaterThan(0);
      expect(run.llamacpp.decodeTokPerS).toBeGreaterThan(0);
      expect(run.decodeRatio).toBeCloseTo(run.ours.decodeTokPerS / run.llamacpp.decodeTokPerS, 1);
    }
  });

  it('alternates rounds: every round\'s steps pooled, one ratio per round', async () => {
    const { benchDecodePeer } = await import('../engine/bench/decode-peer.js');
    const r = await benchDecodePeer({ model: ensureFixtureModel('tiny'), weights: ['q8'], threads: 1, promptTokens: 16, decodeTokens: 4, rounds: 3 });
    expect(r.rounds).toBe(3);
    const run = r.runs[0]!;
    expect(run.decodeRatioPerRound).toHaveLength(3);
    // up to 4 steps a round on each side (llama.cpp may stop at an end-of-generation token)
    expect(run.ours.decodeSteps).toBe(12);
    expect(run.llamacpp.decodeSteps).toBeGreaterThanOrEqual(3);
  });
});
