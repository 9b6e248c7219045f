/**
 * Opening model directories: what is required, what is optional, and one-line errors for everything else.
 * Random models: deterministic, loadable, small.
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
import { embeddedModelDir } from '../engine/paths.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mgd-dir-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function copyOf(src: string, skip: string[] = []): string {
  const dir = fs.mkdtempSync(path.join(tmp, 'm-'));
  for (const f of fs.readdirSync(src)) if (!skip.includes(f)) fs.copyFileSync(path.join(src, f), path.join(dir, f));
  return dir;
}

describe('openModelDir', () => {
  it('reads config, tokenizer files, generation config and weights', () => {
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

  it.each([
    ['a missing directory', () => path.join(tmp, 'none'), /does not exist/],
    ['a file instead of a directory', () => (fs.writeFileSync(path.join(tmp, 'file'), 'x'), path.join(tmp, 'file')), /is not a directory/],
    ['no config.json', () => copyOf(ensureFixtureModel('tiny'), ['config.json']), /config\.json: missing/],
    ['no tokenizer.json', () => copyOf(ensureFixtureModel('tiny'), ['tokenizer.json']), /tokenizer\.json is missing/],
    ['no weights', () => copyOf(ensureFixtureModel('tiny'), ['model.safetensors']), /no weights/],
    ['invalid config JSON', () => {
      const d = copyOf(ensureFixtureModel('tiny'));
      fs.writeFileSync(path.join(d, 'config.json'), '{');
      return d;
    }, /config\.json: invalid JSON/],
    ['an unsupported architecture', () => {
      const d = copyOf(ensureFixtureModel('tiny'));
      fs.writeFileSync(path.join(d, 'config.json'), JSON.stringify({ architectures: ['BertModel'], hidden_size: 8 }));
      return d;
    }, /unsupported architecture BertModel/],
    ['a config with inconsistent heads', () => {
      const d = copyOf(ensureFixtureModel('tiny'));
      const c = JSON.parse(fs.readFileSync(path.join(d, 'config.json'), 'utf8'));
      fs.writeFileSync(path.join(d, 'config.json'), JSON.stringify({ ...c, num_key_value_heads: 3 }));
      return d;
    }, /not a multiple of num_key_value_heads/],
    ['an unsupported rope scaling', () => {
      const d = copyOf(ensureFixtureModel('tiny'));
      const c = JSON.parse(fs.readFileSync(path.join(d, 'config.json'), 'utf8'));
      fs.writeFileSync(path.join(d, 'config.json'), JSON.stringify({ ...c, rope_scaling: { type: 'yarn', factor: 4 } }));
      return d;
    }, /unsupported rope_scaling type "yarn"/],
  ])('%s is a one-line BadInputError', (_name, make, message) => {
    const dir = make();
    let err: unknown;
    try {
      openModelDir(dir);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BadInputError);
    expect((err as Error).message).toMatch(message);
    expect((err as Error).message).not.toContain('\n');
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

  it('the committed embedded model is exactly what make-random --like tiny --seed 0 writes', () => {
    makeRandomModel({ like: 'tiny', out: path.join(tmp, 'emb'), seed: 0 });
    for (const f of ['config.json', 'tokenizer.json', 'model.safetensors'])
      expect(fs.readFileSync(path.join(tmp, 'emb', f)).equals(fs.readFileSync(path.join(embeddedModelDir(), f))), f).toBe(true);
  });
});
