/**
 * Opening model directories: what is required, what is optional, which layout wins, what the fingerprint depends
 * on, and one-line errors for everything else. Random models: deterministic, loadable, small.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BadInputError } from '../engine/errors.js';
import { openModelDir } from '../engine/model/directory.js';
import { ensureFixtureModel } from '../engine/model/fixtures.js';
import { makeRandomModel } from '../engine/model/make-random.js';
import { expectedTensors } from '../engine/model/llama.js';
import { writeSafetensors } from '../engine/model/safetensors.js';
import { embeddedModelDir } from '../engine/paths.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mgd-dir-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const CONFIG = {
  architectures: ['LlamaForCausalLM'],
  hidden_size: 8,
  intermediate_size: 16,
  num_hidden_layers: 1,
  num_attention_heads: 2,
  vocab_size: 10,
  bos_token_id: 1,
  eos_token_id: 2,
};

/**
 * A minimal model directory: config.json, tokenizer.json (openModelDir only checks it exists) and, per `weights`,
 * a model.safetensors, two shards with an index, or an ONNX export; `extra` files are written as given.
 */
function modelDir(weights: 'single' | 'sharded' | 'onnx' | 'none', extra: Record<string, string> = {}): string {
  const dir = fs.mkdtempSync(path.join(tmp, 'm-'));
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(CONFIG));
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), '{}');
  const tensor = (name: string, v: number) => [{ name, dtype: 'F32' as const, shape: [1], data: Float32Array.of(v) }];
  if (weights === 'single') writeSafetensors(path.join(dir, 'model.safetensors'), tensor('w', 1));
  if (weights === 'sharded') {
    writeSafetensors(path.join(dir, 'model-00001-of-00002.safetensors'), tensor('a', 1));
    writeSafetensors(path.join(dir, 'model-00002-of-00002.safetensors'), tensor('b', 2));
    const weight_map = { a: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors' };
    fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map }));
  }
  if (weights === 'onnx') {
    fs.mkdirSync(path.join(dir, 'onnx'));
    fs.writeFileSync(path.join(dir, 'onnx', 'model.onnx'), 'graph');
  }
  for (const [f, text] of Object.entries(extra)) {
    fs.mkdirSync(path.dirname(path.join(dir, f)), { recursive: true });
    fs.writeFileSync(path.join(dir, f), text);
  }
  return dir;
}

function errorOf(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected a throw');
}

describe('openModelDir', () => {
  it('reads the fixture model: config, generation ids, all expected tensors, a stable fingerprint', () => {
    const m = openModelDir(ensureFixtureModel('tiny'));
    expect(m.layout).toBe('safetensors');
    expect(m.config.architecture).toBe('Qwen2ForCausalLM');
    expect(m.config.attentionBias).toBe(true);
    expect(m.generation.eosTokenIds.length).toBe(1);
    const w = m.weights();
    expect(w.names().length).toBe(expectedTensors(m.config).length);
    w.close();
    expect(m.fingerprint()).toBe(openModelDir(ensureFixtureModel('tiny')).fingerprint());
  });

  it('resolves the directory, finds the tokenizer and falls back to config.json for generation ids', () => {
    const dir = modelDir('single');
    const m = openModelDir(path.relative(process.cwd(), dir));
    expect(m.dir).toBe(dir);
    expect(path.isAbsolute(m.dir)).toBe(true);
    expect(m.layout).toBe('safetensors');
    expect(m.onnxFile).toBeNull();
    expect(m.tokenizerFile).toBe(path.join(dir, 'tokenizer.json'));
    expect(m.tokenizerConfig).toBeNull();
    expect(m.generation).toEqual({ eosTokenIds: [2], bosTokenId: 1, promptMode: 'fim', fimOrder: 'psm' });
    const w = m.weights();
    expect(Array.from(w.readF32('w'))).toEqual([1]);
    w.close();
  });

  it('takes tokenizer_config.json as is and generation ids from generation_config.json where it has them', () => {
    const m = openModelDir(
      modelDir('single', {
        'tokenizer_config.json': JSON.stringify({ model_max_length: 512, eos_token: '</s>' }),
        'generation_config.json': JSON.stringify({ eos_token_id: [2, 7], bos_token_id: 5 }),
      }),
    );
    expect(m.tokenizerConfig).toEqual({ model_max_length: 512, eos_token: '</s>' });
    expect(m.generation).toEqual({ eosTokenIds: [2, 7], bosTokenId: 5, promptMode: 'fim', fimOrder: 'psm' });
    const partial = openModelDir(modelDir('single', { 'generation_config.json': JSON.stringify({ eos_token_id: 9 }) }));
    expect(partial.generation).toEqual({ eosTokenIds: [9], bosTokenId: 1, promptMode: 'fim', fimOrder: 'psm' });
    const none = openModelDir(modelDir('single', { 'generation_config.json': JSON.stringify({ do_sample: false }) }));
    expect(none.generation).toEqual({ eosTokenIds: [2], bosTokenId: 1, promptMode: 'fim', fimOrder: 'psm' });
  });

  it('reads a sharded checkpoint as one weight source', () => {
    const m = openModelDir(modelDir('sharded'));
    expect(m.layout).toBe('safetensors');
    const w = m.weights();
    expect(w.names().sort()).toEqual(['a', 'b']);
    expect(Array.from(w.readF32('b'))).toEqual([2]);
    w.close();
  });

  it('finds a transformers.js / Optimum ONNX export, and prefers safetensors when both exist', () => {
    const dir = modelDir('onnx');
    const m = openModelDir(dir);
    expect(m.layout).toBe('onnx');
    expect(m.onnxFile).toBe(path.join(dir, 'onnx', 'model.onnx'));
    const err = errorOf(() => m.weights());
    expect(err).toBeInstanceOf(BadInputError);
    expect(err.message).toMatch(/has ONNX weights only/);

    const merged = modelDir('none', { 'onnx/decoder_model_merged.onnx': 'graph' });
    expect(openModelDir(merged).onnxFile).toBe(path.join(merged, 'onnx', 'decoder_model_merged.onnx'));

    const both = modelDir('single', { 'onnx/model.onnx': 'graph' });
    const b = openModelDir(both);
    expect(b.layout).toBe('safetensors');
    expect(b.onnxFile).toBeNull();
  });

  it('fingerprints config.json and the weight files (name, size, mtime), nothing else', () => {
    const dir = modelDir('sharded');
    const fp = () => openModelDir(dir).fingerprint();
    const first = fp();
    expect(first).toMatch(/^[0-9a-f]{64}$/);
    expect(fp()).toBe(first);

    fs.writeFileSync(path.join(dir, 'tokenizer.json'), '{"changed": true}');
    fs.writeFileSync(path.join(dir, 'generation_config.json'), '{}');
    expect(fp()).toBe(first);

    const shard = path.join(dir, 'model-00002-of-00002.safetensors');
    const t = new Date('2020-01-01T00:00:00Z');
    fs.utimesSync(shard, t, t);
    const touched = fp();
    expect(touched).not.toBe(first);

    writeSafetensors(shard, [{ name: 'b', dtype: 'F32', shape: [2], data: Float32Array.of(2, 3) }]);
    fs.utimesSync(shard, t, t);
    const resized = fp();
    expect(resized).not.toBe(touched);

    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...CONFIG, rms_norm_eps: 1e-5 }));
    expect(fp()).not.toBe(resized);
  });

  it("an ONNX export's fingerprint covers its external data file", () => {
    const dir = modelDir('onnx', { 'onnx/model.onnx_data': 'weights' });
    const before = openModelDir(dir).fingerprint();
    fs.writeFileSync(path.join(dir, 'onnx', 'model.onnx_data'), 'other weights');
    expect(openModelDir(dir).fingerprint()).not.toBe(before);
  });

  it('a weight file removed after opening is a BadInputError from fingerprint()', () => {
    const dir = modelDir('single');
    const m = openModelDir(dir);
    fs.rmSync(path.join(dir, 'model.safetensors'));
    expect(errorOf(() => m.fingerprint()).message).toMatch(/weight file model\.safetensors disappeared/);
  });

  it.skipIf(process.getuid?.() === 0)('an unreadable directory is a BadInputError', () => {
    const dir = modelDir('single');
    fs.chmodSync(dir, 0o000);
    try {
      expect(errorOf(() => openModelDir(dir)).message).toMatch(/is not readable/);
    } finally {
      fs.chmodSync(dir, 0o755);
    }
  });

  const withConfig = (text: string) => () => modelDir('single', { 'config.json': text });
  it.each([
    ['a missing directory', () => path.join(tmp, 'none'), /^model directory .*none does not exist$/],
    ['a file instead of a directory', () => (fs.writeFileSync(path.join(tmp, 'file'), 'x'), path.join(tmp, 'file')), /is a file but not a GGUF file/],
    ['no config.json', () => { const d = modelDir('single'); fs.rmSync(path.join(d, 'config.json')); return d; }, /config\.json is missing/],
    ['invalid config JSON', withConfig('{'), /^config\.json: invalid JSON/],
    ['a config that is not an object', withConfig('[1]'), /^config\.json: not a JSON object/],
    ['an unsupported architecture', withConfig(JSON.stringify({ architectures: ['BertModel'], hidden_size: 8 })), /unsupported architecture BertModel/],
    ['a config with inconsistent heads', withConfig(JSON.stringify({ ...CONFIG, num_key_value_heads: 3 })), /not a multiple of num_key_value_heads/],
    ['an unsupported rope scaling', withConfig(JSON.stringify({ ...CONFIG, rope_scaling: { type: 'yarn', factor: 4 } })), /unsupported rope_scaling type "yarn"/],
    ['no tokenizer.json', () => { const d = modelDir('single'); fs.rmSync(path.join(d, 'tokenizer.json')); return d; }, /tokenizer\.json is missing/],
    ['a tokenizer.json that is a directory', () => { const d = modelDir('single'); fs.rmSync(path.join(d, 'tokenizer.json')); fs.mkdirSync(path.join(d, 'tokenizer.json')); return d; }, /tokenizer\.json is missing/],
    ['a tokenizer_config.json that is not an object', () => modelDir('single', { 'tokenizer_config.json': '"x"' }), /^tokenizer_config\.json: not a JSON object/],
    ['a generation_config.json that is null', () => modelDir('single', { 'generation_config.json': 'null' }), /^generation_config\.json: not a JSON object/],
    ['an invalid generation_config.json', () => modelDir('single', { 'generation_config.json': '{,}' }), /^generation_config\.json: invalid JSON/],
    ['no weights', () => modelDir('none'), /no weights \(model\.safetensors, model\.safetensors\.index\.json, onnx\/model\.onnx or onnx\/decoder_model_merged\.onnx\)/],
    ['an onnx/ folder without a known model file', () => modelDir('none', { 'onnx/other.onnx': 'graph' }), /no weights/],
    ['a missing shard', () => { const d = modelDir('sharded'); fs.rmSync(path.join(d, 'model-00002-of-00002.safetensors')); return d; }, /shard "model-00002-of-00002\.safetensors" is missing/],
    ['a shard path outside the directory', () => modelDir('none', { 'model.safetensors.index.json': JSON.stringify({ weight_map: { a: '../m-x/model.safetensors' } }) }), /not a file name in the model directory/],
  ])('%s is a one-line BadInputError', (_name, make, message) => {
    const dir = make();
    const err = errorOf(() => openModelDir(dir));
    expect(err).toBeInstanceOf(BadInputError);
    expect(err.message).toMatch(message);
    expect(err.message).not.toContain('\n');
  });
});

describe('make-random', () => {
  it('is deterministic per seed and different across seeds', () => {
    const a = makeRandomModel({ like: 'tiny', out: path.join(tmp, 'a'), seed: 1 });
    makeRandomModel({ like: 'tiny', out: path.join(tmp, 'b'), seed: 1 });
    makeRandomModel({ like: 'tiny', out: path.join(tmp, 'c'), seed: 2 });
    const read = (d: string) => fs.readFileSync(path.join(tmp, d, 'model.safetensors'));
    expect(read('a').equals(read('b'))).toBe(true);
    expect(read('a').equals(read('c'))).toBe(false);
    expect(a.parameters).toBeGreaterThan(100_000);
    expect(fs.statSync(path.join(tmp, 'a', 'model.safetensors')).size).toBeLessThan(1_000_000);
  });

  it('writes f16 and bf16 checkpoints that read back close to f32', () => {
    makeRandomModel({ like: 'tiny', out: path.join(tmp, 'f32'), seed: 4, dtype: 'F32' });
    for (const dtype of ['F16', 'BF16'] as const) {
      makeRandomModel({ like: 'tiny', out: path.join(tmp, dtype), seed: 4, dtype });
      const w = openModelDir(path.join(tmp, dtype)).weights();
      const ref = openModelDir(path.join(tmp, 'f32')).weights();
      const name = 'model.layers.0.mlp.up_proj.weight';
      expect(w.info(name).dtype).toBe(dtype);
      const x = w.readF32(name);
      const y = ref.readF32(name);
      for (let i = 0; i < x.length; i += 97) expect(Math.abs(x[i]! - y[i]!)).toBeLessThanOrEqual(Math.abs(y[i]!) * (dtype === 'F16' ? 1e-3 : 8e-3) + 1e-6);
      w.close();
      ref.close();
    }
  });

  it('reads the prompt mode a model declares: prefix, FIM in suffix-prefix-middle order, or FIM by default', () => {
    const tiny = ensureFixtureModel('tiny');
    expect(openModelDir(tiny).generation).toMatchObject({ promptMode: 'fim', fimOrder: 'psm' });
    for (const [declared, expected] of [
      ['prefix', { promptMode: 'prefix' }],
      ['fim-spm', { promptMode: 'fim', fimOrder: 'spm' }],
      ['fim-spm-joined', { promptMode: 'fim', fimOrder: 'spm-joined' }],
      ['something-else', { promptMode: 'fim', fimOrder: 'psm' }],
    ] as const) {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mgd-prompt-mode-'));
      fs.cpSync(tiny, dir, { recursive: true });
      const gen = JSON.parse(fs.readFileSync(path.join(dir, 'generation_config.json'), 'utf8') || '{}');
      fs.writeFileSync(path.join(dir, 'generation_config.json'), JSON.stringify({ ...gen, mgd_prompt: declared }));
      expect(openModelDir(dir).generation, declared).toMatchObject(expected);
      fs.rmSync(dir, { recursive: true, force: true });
    }
    // the embedded model declares what its card measured
    const card = fs.readFileSync(path.join(embeddedModelDir(), 'MODEL_CARD.md'), 'utf8');
    const mode = /Prompt mode chosen from these numbers: \*\*([\w-]+)\*\*/.exec(card)![1];
    const g = openModelDir(embeddedModelDir()).generation;
    expect(g.promptMode === 'prefix' ? 'prefix' : g.fimOrder === 'psm' ? 'fim' : `fim-${g.fimOrder}`).toBe(mode);
  });
});
