/**
 * The dot-completion evaluation: metrics on hand-made completions, the judge on real zod sources (a task's own truth
 * compiles, a made-up member is an invalid member at the site), task picking, bad input, and the 20-task smoke run
 * end to end through the CLI with the embedded model. Needs the npm registry once to build zod's workspace (cached
 * under MGD_CACHE_DIR afterwards); zod has no dependencies, so that is one tarball and @types/node.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { main } from '../server/cli.js';
import { BadInputError } from '../engine/errors.js';
import { diagnosticKey, identifiers, matchMetrics, newDiagnostics, rates, type SampleScore } from '../engine/eval/metrics.js';
import { parseTasks, readTasks, type DotTask } from '../engine/eval/tasks.js';
import { ensureWorkspace, isSourceFile, parsePackageSpec, type Workspace } from '../engine/eval/packages.js';
import { CompileJudge, siteOffset } from '../engine/eval/run-dots.js';
import { makeDots } from '../engine/eval/make-dots.js';
import { svgChart } from '../engine/eval/report.js';
import type ts from 'typescript';

const root = path.resolve(import.meta.dirname, '..');
const SMOKE = path.join(root, 'fixtures/eval/smoke.jsonl');

async function run(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await main(argv, { stdout: (s) => (stdout += s), stderr: (s) => (stderr += s) });
  return { code, stdout, stderr };
}

describe('metrics', () => {
  it('identifiers are read by the scanner: not inside strings or comments, template substitutions included', () => {
    expect(identifiers('push(issue.code, "not these words");')).toEqual(['push', 'issue', 'code']);
    expect(identifiers('a /* b */ + c // d')).toEqual(['a', 'c']);
    // a truth that starts inside a substitution (zod's locales): the text after its `}` is template text
    expect(identifiers('origin ?? "x"} must be ${adj}${issue.maximum.toString()} long`;')).toEqual(['origin', 'adj', 'issue', 'maximum', 'toString']);
    expect(identifiers('x.y(); }')).toEqual(['x', 'y']);
    expect(identifiers('`head ${y.z} middle ${w} tail`')).toEqual(['y', 'z', 'w']);
    expect(identifiers('return this.x')).toEqual(['x']); // keywords are not identifiers
  });

  it('NIM, exact line and ISM', () => {
    expect(matchMetrics('push(issue);', 'push(issue);')).toEqual({ nim: true, exactLine: true, ism: 1 });
    expect(matchMetrics('  push(issue);  ', 'push(issue);')).toEqual({ nim: true, exactLine: true, ism: 1 });
    // same first identifier, then diverges: 1 of the truth's 3 identifiers matched as a prefix
    expect(matchMetrics('push(other.code)', 'push(issue.code)')).toEqual({ nim: true, exactLine: false, ism: 1 / 3 });
    // a later match does not count once the sequence diverged
    expect(matchMetrics('pop(issue.code)', 'push(issue.code)')).toEqual({ nim: false, exactLine: false, ism: 0 });
    expect(matchMetrics('', 'length;')).toEqual({ nim: false, exactLine: false, ism: 0 });
    // a longer completion still matches the whole truth
    expect(matchMetrics('a.b.c.d', 'a.b')).toMatchObject({ nim: true, exactLine: false, ism: 1 });
  });

  it('new diagnostics are a multiset difference on code and message, not position', () => {
    const d = (code: number, text: string, start: number) => ({ code, messageText: text, start, length: 1, category: 1, file: undefined }) as ts.Diagnostic;
    const before = [d(2339, "Property 'a' does not exist", 10), d(2339, "Property 'a' does not exist", 20)];
    expect(newDiagnostics(before, [d(2339, "Property 'a' does not exist", 15)])).toEqual([]);
    const added = newDiagnostics(before, [...before, d(2339, "Property 'a' does not exist", 30), d(1005, "';' expected.", 3)]);
    expect(added.map(diagnosticKey)).toEqual(["TS2339: Property 'a' does not exist", "TS1005: ';' expected."]);
  });

  it('rates average samples per task, then tasks; score@k counts a task when any sample compiles', () => {
    const s = (compiles: boolean, nim = false): SampleScore => ({ compiles, nim, exactLine: false, ism: nim ? 1 : 0, invalidMember: !compiles });
    const r = rates([
      [s(true, true), s(false)],
      [s(false), s(false)],
    ]);
    expect(r).toEqual({ tasks: 2, nim: 0.25, exactLine: 0, ism: 0.25, compileRate: 0.25, invalidMemberRate: 0.75, scoreAtK: 0.5 });
  });

  it('the chart has one bar pair per configuration', () => {
    const svg = svgChart([
      { label: 'monitors off, context off', compileRate: 0.1, nim: 0.2 },
      { label: 'monitors on, context off', compileRate: 0.3, nim: 0.4 },
    ]);
    expect(svg.startsWith('<svg')).toBe(true);
    const bars = [...svg.matchAll(/<rect class="bar" [^>]*height="([\d.]+)"[^>]*><title>([^<]*)</g)].map((m) => [m[2], Number(m[1])]);
    // heights in proportion to the values (the plot is 200 px tall)
    expect(bars).toEqual([
      ['monitors off, context off: compile rate 10.0%', 20],
      ['monitors off, context off: NIM 20.0%', 40],
      ['monitors on, context off: compile rate 30.0%', 60],
      ['monitors on, context off: NIM 40.0%', 80],
    ]);
  });
});

describe('tasks and packages: bad input is one line', () => {
  it('malformed task lines name the file and line', () => {
    const good = JSON.stringify({ package: 'zod@4.6.7', file: 'src/a.ts', line: 1, character: 2, truth: 'x', receiver: 'a', tags: ['call'] });
    expect(parseTasks(good + '\n\n' + good + '\n')).toHaveLength(2);
    expect(() => parseTasks(good + '\n{oops', 't.jsonl')).toThrow(/^t\.jsonl:2: not JSON/);
    expect(() => parseTasks(good.replace('"line":1', '"line":-1'), 't.jsonl')).toThrow(/t\.jsonl:1: "line" must be an integer/);
    expect(() => parseTasks(good.replace('zod@4.6.7', 'zod'), 't.jsonl')).toThrow(/needs a version/);
    expect(() => parseTasks(good.replace('"call"', '"bogus"'), 't.jsonl')).toThrow(/"tags"/);
    expect(() => parseTasks(good.replace('src/a.ts', '../a.ts'), 't.jsonl')).toThrow(/inside the package/);
    expect(() => parseTasks('\n', 't.jsonl')).toThrow(BadInputError);
  });

  it('package specs and source files', () => {
    expect(parsePackageSpec('@trpc/server@11.25.2')).toEqual({ name: '@trpc/server', version: '11.25.2' });
    expect(() => parsePackageSpec('Not A Name@1')).toThrow(BadInputError);
    expect(isSourceFile('src/v4/core/core.ts')).toBe(true);
    for (const f of ['src/a.d.ts', 'src/tests/a.ts', 'src/a.test.ts', 'lib/a.ts', 'src/a.js']) expect(isSourceFile(f), f).toBe(false);
  });

  it('the CLI: a malformed tasks file and an unknown package exit 2 with one line', async () => {
    const bad = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'mgd-eval-')), 'bad.jsonl');
    fs.writeFileSync(bad, '{"package": "zod@4.6.7"\n');
    const r = await run('eval', 'dots', bad);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^mgd: .*bad\.jsonl:1: not JSON.*\n$/);
    const u = await run('eval', 'make-dots', '--package', 'mgd-no-such-package-7f3a9c@1.0.0', '--out', bad + '.out');
    expect(u.code).toBe(2);
    expect(u.stderr.split('\n').filter(Boolean)).toHaveLength(1);
    expect(u.stderr).toMatch(/fetching mgd-no-such-package-7f3a9c@1.0.0 failed/);
  });
});

describe('zod: judge, picking sites, and the smoke run', () => {
  let ws: Workspace;
  let smoke: DotTask[];
  beforeAll(async () => {
    smoke = readTasks(SMOKE);
    ws = await ensureWorkspace(parsePackageSpec(smoke[0]!.package));
  }, 180_000);

  it('the smoke set is 20 zod tasks that still match their files', () => {
    expect(smoke).toHaveLength(20);
    for (const [i, t] of smoke.entries()) {
      expect(t.package).toBe(smoke[0]!.package);
      expect(() => siteOffset(t, fs.readFileSync(path.join(ws.dir, t.file), 'utf8'), `task ${i + 1}`)).not.toThrow();
    }
  });

  it("a task's truth compiles; a made-up member is an invalid member at the site", () => {
    const judge = new CompileJudge(ws.dir);
    try {
      for (const t of smoke.slice(0, 6)) {
        const text = fs.readFileSync(path.join(ws.dir, t.file), 'utf8');
        const offset = siteOffset(t, text, t.file);
        const lineEnd = text.indexOf('\n', offset);
        const complete = (completion: string) => text.slice(0, offset) + completion + text.slice(lineEnd);
        expect(judge.judge(t.file, text, complete(t.truth), offset), `${t.file}:${t.line}`).toMatchObject({ compiles: true, invalidMember: false });
        expect(matchMetrics(t.truth, t.truth)).toEqual({ nim: true, exactLine: true, ism: 1 });
        const member = identifiers(t.truth)[0]!;
        const wrong = judge.judge(t.file, text, complete('mgdNoSuchMember' + t.truth.slice(member.length)), offset);
        expect(wrong.compiles).toBe(false);
        expect(wrong.invalidMember, `${t.file}:${t.line} ${wrong.added.map(diagnosticKey).join('; ')}`).toBe(true);
      }
    } finally {
      judge.dispose();
    }
  });

  it('make-dots picks the same sites for a seed, each just after a dot in a file that type-checks', async () => {
    const pick = () => makeDots({ packages: [parsePackageSpec(smoke[0]!.package)], limit: 6, seed: 7 });
    const a = await pick();
    const b = await pick();
    expect(a.tasks).toEqual(b.tasks);
    expect(a.tasks).toHaveLength(6);
    expect(new Set(a.tasks.map((t) => t.file)).size).toBe(6); // spread across files
    for (const t of a.tasks) {
      const text = fs.readFileSync(path.join(ws.dir, t.file), 'utf8');
      expect(() => siteOffset(t, text, t.file)).not.toThrow();
      expect(t.truth.startsWith(identifiers(t.truth)[0]!)).toBe(true);
      expect(t.tags).toContain(t.tags.includes('call') ? 'call' : 'property');
      expect(t.tags.filter((g) => ['cross-file', 'npm-package', 'lib', 'same-file'].includes(g))).toHaveLength(1);
    }
  });

  it('the smoke run through the CLI: 20 judged tasks, no invalid member with monitors', async () => {
    const md = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'mgd-eval-')), 'smoke.md');
    const r = await run('eval', 'dots', SMOKE, '--jobs', '1', '--json', '--markdown', md);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    for (const k of ['tasks', 'nim', 'exactLine', 'ism', 'compileRate', 'invalidMemberRate', 'scoreAtK', 'perTag', 'perTask']) expect(j, k).toHaveProperty(k);
    expect(j.tasks).toBe(20);
    expect(j.perTask).toHaveLength(20);
    expect(j.monitors).toBe(true);
    expect(j.invalidMemberRate).toBe(0);
    expect(j.scoreAtK).toBe(j.compileRate); // one greedy sample
    // the aggregate is the mean of the per-task judgements
    const mean = (f: (t: { samples: SampleScore[] }) => number) => j.perTask.reduce((a: number, t: { samples: SampleScore[] }) => a + f(t), 0) / 20;
    expect(j.compileRate).toBeCloseTo(mean((t) => +t.samples[0]!.compiles), 4);
    expect(j.nim).toBeCloseTo(mean((t) => +t.samples[0]!.nim), 4);
    for (const t of j.perTask) expect(t.samples[0]).toMatchObject(matchMetrics(t.completions[0], t.truth));
    // diagnostics inside the completion are some of the task's new ones, and the report counts their tasks
    for (const t of j.perTask as Array<{ diagnosticKinds: Record<string, number>; siteKinds: Record<string, number> }>) {
      for (const [k, n] of Object.entries(t.siteKinds)) expect(n).toBeLessThanOrEqual(t.diagnosticKinds[k] ?? 0);
    }
    for (const [k, v] of Object.entries(j.diagnosticKinds as Record<string, { tasks: number; siteTasks: number }>)) {
      expect(v.siteTasks, k).toBe(j.perTask.filter((t: { siteKinds: Record<string, number> }) => t.siteKinds[k]).length);
      expect(v.siteTasks).toBeLessThanOrEqual(v.tasks);
    }
    expect(fs.readFileSync(md, 'utf8')).toMatch(/\| all \| 20 \|/);
  });

  it('--no-monitors --no-context with k samples: score@k is at least the compile rate', async () => {
    const r = await run('eval', 'dots', SMOKE, '--no-monitors', '--no-context', '--samples', '2', '--limit', '3', '--jobs', '2', '--json');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j).toMatchObject({ tasks: 3, samples: 2, monitors: false, context: false });
    for (const t of j.perTask) expect(t.completions).toHaveLength(2);
    expect(j.scoreAtK).toBeGreaterThanOrEqual(j.compileRate);
  });
});
