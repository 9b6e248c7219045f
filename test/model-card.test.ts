/**
 * The shipped embedded model is exactly what its card describes: every file's SHA-256 matches the card's table,
 * and the card's configuration matches config.json.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { embeddedModelDir } from '../engine/paths.js';
import { openModelDir } from '../engine/model/directory.js';

describe('embedded model card', () => {
  const dir = embeddedModelDir();
  const card = fs.readFileSync(path.join(dir, 'MODEL_CARD.md'), 'utf8');

  it('lists the SHA-256 of every shipped file, and they match', () => {
    const rows = [...card.matchAll(/^\| ([\w.]+) \| ([0-9a-f]{64}) \|$/gm)].map((m) => [m[1]!, m[2]!] as const);
    expect(rows.map(([f]) => f).sort()).toEqual(['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
    for (const [file, sha] of rows) expect(crypto.createHash('sha256').update(fs.readFileSync(path.join(dir, file))).digest('hex'), file).toBe(sha);
  });

  it('states the architecture config.json has', () => {
    const m = openModelDir(dir);
    expect(card).toContain(`${m.config.numLayers} layers, hidden ${m.config.hiddenSize}`);
    // where it was trained, as train.py recorded it; a CPU-trained model must say the GPU run is owed
    // (a fine-tune records the model it started from: the pretraining's hardware is that model's)
    const log = JSON.parse(fs.readFileSync(path.join(dir, 'train-log.json'), 'utf8')) as { device: string; parameters: number; base?: { device: string } };
    const pretrainedOn = log.base?.device ?? log.device;
    if (pretrainedOn === 'cpu') expect(card).toMatch(/GPU run of the\s+training recipe .* is still owed/s);
    else expect(card).toContain(`Trained on one ${pretrainedOn}`);
    if (log.base) expect(card).toMatch(/then fine-tuned for\s+fill-in-the-middle on (a CPU|one )/);
    expect(card).toContain(`${log.parameters.toLocaleString('en-US')} parameters`);
  });

  it('is small enough to ship in the repository', () => {
    expect(fs.statSync(path.join(dir, 'model.safetensors')).size).toBeLessThan(60e6);
  });
});
