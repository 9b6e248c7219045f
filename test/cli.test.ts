/**
 * The `mgd` command line, in process (fast) and once as a real child process through bin/mgd.js (the installed door).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { main } from '../server/cli.js';
import { ensureFixtureModel } from '../engine/model/fixtures.js';

const root = path.resolve(import.meta.dirname, '..');
const sample = path.join(root, 'fixtures/repos/shapes/src/main.ts');

async function run(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await main(argv, { stdout: (s) => (stdout += s), stderr: (s) => (stderr += s) });
  return { code, stdout, stderr };
}

describe('mgd complete', () => {
  it('completes at a position with the embedded model and reports the JSON contract', async () => {
    const r = await run('complete', sample, '--line', '10', '--character', '13', '--workspace', path.join(root, 'fixtures/repos/shapes'), '--max-tokens', '8', '--json');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(typeof j.text).toBe('string');
    expect(j.tokens).toBeGreaterThan(0);
    expect(j.tokens).toBeLessThanOrEqual(8);
    expect(j.promptTokens).toBeGreaterThan(10);
    for (const k of ['loadMs', 'analysisMs', 'prefillMs', 'decodeMs', 'totalMs']) expect(typeof j.timings[k]).toBe('number');
    for (const k of ['triggers', 'maskedSteps', 'interventions']) expect(typeof j.monitor[k]).toBe('number');
    expect(j.cache).toMatchObject({ promptTokens: j.promptTokens, reusedTokens: 0, source: 'cold' });
    expect(j.cache.bytes).toBeGreaterThan(0);
    expect(j.promptMode).toBe('fim'); // the embedded model declares the joined suffix-first FIM order (its card says why)
  });

  it('greedy completion is deterministic', async () => {
    const a = await run('complete', sample, '--line', '3', '--character', '10', '--max-tokens', '6', '--json');
    const b = await run('complete', sample, '--line', '3', '--character', '10', '--max-tokens', '6', '--json');
    expect(JSON.parse(a.stdout).text).toBe(JSON.parse(b.stdout).text);
  });

  it('works on a make-random model with the real Qwen2 vocabulary, in q8', async () => {
    const r = await run('complete', sample, '--line', '10', '--character', '13', '--model', ensureFixtureModel('qwen-vocab'), '--weights', 'q8', '--max-tokens', '4', '--json');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).backend.weights).toBe('q8');
  });
});

describe('mgd: bad input is one line and exit code 2', () => {
  const cases: Array<[string, string[], RegExp]> = [
    ['missing file', ['complete', '/nonexistent/x.ts', '--line', '0', '--character', '0'], /cannot read .*ENOENT/],
    ['line out of range', ['complete', sample, '--line', '999', '--character', '0'], /line 999 is outside/],
    ['character out of range', ['complete', sample, '--line', '0', '--character', '500'], /character 500 is outside line 0/],
    ['missing --line', ['complete', sample, '--character', '0'], /--line is required/],
    ['bad number', ['complete', sample, '--line', 'x', '--character', '0'], /--line must be an integer/],
    ['missing model dir', ['complete', sample, '--line', '0', '--character', '0', '--model', '/nonexistent/model'], /nonexistent\/model/],
    ['unknown option', ['complete', sample, '--bogus'], /bogus/],
    ['unknown command', ['frobnicate'], /unknown command "frobnicate"/],
    ['bad weights', ['complete', sample, '--line', '0', '--character', '0', '--weights', 'q3'], /--weights must be one of/],
  ];
  it.each(cases)('%s', async (_name, argv, message) => {
    const r = await run(...argv);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stdout).toBe('');
  });

  it('unsupported architecture and corrupt weights', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mgd-cli-'));
    try {
      const src = ensureFixtureModel('tiny');
      for (const f of fs.readdirSync(src)) fs.copyFileSync(path.join(src, f), path.join(dir, f));
      const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
      fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...cfg, architectures: ['GPTNeoXForCausalLM'] }));
      let r = await run('model', 'info', dir);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/unsupported architecture GPTNeoXForCausalLM/);

      fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
      const st = path.join(dir, 'model.safetensors');
      const bytes = fs.readFileSync(st);
      bytes.writeBigUInt64LE(1n << 40n, 0); // header length far beyond the file
      fs.writeFileSync(st, bytes);
      r = await run('complete', sample, '--line', '0', '--character', '0', '--model', dir);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/model\.safetensors/);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      r = await run('complete', sample, '--line', '0', '--character', '0', '--model', dir, '--verbose');
      expect(r.stderr.split('\n').length).toBeGreaterThan(2); // the stack, on request
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('mgd model', () => {
  it('info describes a model directory', async () => {
    const r = await run('model', 'info', ensureFixtureModel('tiny'), '--json');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.layout).toBe('safetensors');
    expect(j.config.architecture).toBe('Qwen2ForCausalLM');
    expect(j.parameters).toBeGreaterThan(0);
  });

  it('make-random writes a loadable model, deterministically', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mgd-mr-'));
    try {
      expect((await run('model', 'make-random', '--like', 'tiny-llama', '--out', path.join(dir, 'a'), '--seed', '3')).code).toBe(0);
      expect((await run('model', 'make-random', '--like', 'tiny-llama', '--out', path.join(dir, 'b'), '--seed', '3')).code).toBe(0);
      expect(fs.readFileSync(path.join(dir, 'a/model.safetensors')).equals(fs.readFileSync(path.join(dir, 'b/model.safetensors')))).toBe(true);
      const r = await run('complete', sample, '--line', '3', '--character', '10', '--model', path.join(dir, 'a'), '--max-tokens', '3');
      expect(r.code).toBe(0);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('mgd bench latency', () => {
  it('replays keystrokes and reports latency percentiles and fractions (values not checked)', async () => {
    const r = await run('bench', 'latency', '--model', ensureFixtureModel('tiny'), '--keystrokes', '6', '--interval-ms', '0', '--threads', '2', '--json');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.keystrokes).toBe(6);
    // one pass with suggestions shown unchecked, one checked: the same session, so their latencies compare
    for (const pass of [j.unverified, j.verified]) {
      for (const k of ['cachedFraction', 'cancelledFraction', 'suppressedFraction']) expect(pass[k]).toBeGreaterThanOrEqual(0);
      expect(pass.answered + Math.round(pass.cancelledFraction * 6)).toBeLessThanOrEqual(6);
    }
    expect(j.unverified.verifyMs).toBeUndefined();
    expect(Object.keys(j.verified.verifyMs.statuses).every((s: string) => s !== 'off')).toBe(true);
  });
});

describe('mgd bench ui', () => {
  it('checks its arguments before starting an editor: one line, exit 2', async () => {
    for (const args of [['--triggers', '0'], ['--pause', '-5'], ['extra']]) {
      const r = await run('bench', 'ui', ...args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
    }
  });
});

describe('bin/mgd.js (the installed command)', () => {
  it('runs as a process: JSON on stdout, exit 0; bad input exit 2 with one line', () => {
    const out = execFileSync(process.execPath, [path.join(root, 'bin/mgd.js'), 'complete', sample, '--line', '10', '--character', '13', '--max-tokens', '4', '--json'], {
      encoding: 'utf8',
      env: { ...process.env },
    });
    expect(JSON.parse(out).tokens).toBeGreaterThan(0);
    const bad = spawnSync(process.execPath, [path.join(root, 'bin/mgd.js'), 'complete', sample, '--line', '-1', '--character', '0'], { encoding: 'utf8' });
    expect(bad.status).toBe(2);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
  });
});
