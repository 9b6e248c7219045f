/**
 * `mgd eval`: the dot-completion evaluation's door (engine/eval does the work).
 *
 *   make-dots --package NAME@VERSION ... --out FILE [--limit N] [--seed S]   pick tasks (limit and seed per package)
 *   dots TASKS [--no-monitors] [--no-context] [--model DIR] [--samples k] [--limit N] [--jobs N] [--json] [--markdown FILE]
 *   report TASKS --out docs/eval.md --svg docs/eval.svg [--model DIR] [--limit N] [--jobs N]
 *                                                        monitors off/on x context off/on into the report
 */
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { BadInputError } from '../engine/errors.js';
import { makeDots } from '../engine/eval/make-dots.js';
import { parsePackageSpec } from '../engine/eval/packages.js';
import { formatTasks, readTasks } from '../engine/eval/tasks.js';
import { defaultJobs, runDots, type DotsReport } from '../engine/eval/run-dots.js';
import { markdownReport, writeEvalDoc } from '../engine/eval/report.js';

type Out = { stdout: (s: string) => void; stderr: (s: string) => void };

function parse<T extends ParseArgsConfig['options']>(args: string[], options: T) {
  return parseArgs({ args, options: { ...options, verbose: { type: 'boolean' }, json: { type: 'boolean' } }, allowPositionals: true, strict: true });
}

function int(v: string | undefined, name: string, min: number, fallback?: number): number | undefined {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new BadInputError(`--${name} must be an integer >= ${min}, got "${v}"`);
  return n;
}

export async function evalCommand(args: string[], out: Out): Promise<number> {
  const [sub, ...rest] = args;
  const log = (line: string) => out.stderr(line + '\n');
  if (sub === 'make-dots') {
    const { values, positionals } = parse(rest, { package: { type: 'string', multiple: true }, out: { type: 'string' }, limit: { type: 'string' }, seed: { type: 'string' } });
    if (positionals.length) throw new BadInputError(`unexpected argument "${positionals[0]}"`);
    if (!values.package?.length) throw new BadInputError('--package NAME@VERSION is required');
    if (!values.out) throw new BadInputError('--out FILE is required');
    const packages = values.package.map(parsePackageSpec);
    const { tasks, packages: stats } = await makeDots({ packages, limit: int(values.limit, 'limit', 1), seed: int(values.seed, 'seed', 0, 0), log: values.verbose ? log : undefined });
    fs.mkdirSync(path.dirname(path.resolve(values.out)), { recursive: true });
    fs.writeFileSync(values.out, formatTasks(tasks));
    out.stdout(values.json ? JSON.stringify({ out: values.out, tasks: tasks.length, packages: stats }) + '\n' : `wrote ${tasks.length} tasks to ${values.out}\n`);
    return 0;
  }
  if (sub === 'dots') {
    const { values, positionals } = parse(rest, {
      'no-monitors': { type: 'boolean' },
      'no-context': { type: 'boolean' },
      'no-verify': { type: 'boolean' },
      model: { type: 'string' },
      samples: { type: 'string' },
      limit: { type: 'string' },
      jobs: { type: 'string' },
      threads: { type: 'string' },
      'max-tokens': { type: 'string' },
      markdown: { type: 'string' },
    });
    if (positionals.length !== 1) throw new BadInputError('eval dots takes one tasks file');
    let tasks = readTasks(positionals[0]!);
    const limit = int(values.limit, 'limit', 1);
    if (limit !== undefined) tasks = tasks.slice(0, limit);
    const report = await runDots(tasks, {
      model: values.model,
      monitors: !values['no-monitors'],
      verify: !values['no-monitors'] && !values['no-verify'],
      context: !values['no-context'],
      samples: int(values.samples, 'samples', 1, 1)!,
      maxTokens: int(values['max-tokens'], 'max-tokens', 1, 48),
      jobs: int(values.jobs, 'jobs', 1, defaultJobs()),
      threads: int(values.threads, 'threads', 1),
      log: values.verbose ? log : undefined,
    });
    if (values.markdown) fs.writeFileSync(values.markdown, markdownReport(report));
    out.stdout(values.json ? JSON.stringify(report) + '\n' : summary(report) + '\n');
    return 0;
  }
  if (sub === 'report') {
    const { values, positionals } = parse(rest, { out: { type: 'string' }, svg: { type: 'string' }, model: { type: 'string' }, limit: { type: 'string' }, jobs: { type: 'string' }, 'max-tokens': { type: 'string' } });
    if (positionals.length !== 1) throw new BadInputError('eval report takes one tasks file');
    if (!values.out || !values.svg) throw new BadInputError('--out FILE.md and --svg FILE.svg are required');
    let tasks = readTasks(positionals[0]!);
    const limit = int(values.limit, 'limit', 1);
    if (limit !== undefined) tasks = tasks.slice(0, limit);
    const jobs = int(values.jobs, 'jobs', 1, defaultJobs())!;
    const reports: DotsReport[] = [];
    // monitors off, monitors on, monitors + verification; each without and with repository context
    const configs = [false, true].flatMap((context) => [
      { monitors: false, verify: false, context },
      { monitors: true, verify: false, context },
      { monitors: true, verify: true, context },
    ]);
    {
      for (const { monitors, verify, context } of configs) {
        log(`eval: monitors ${monitors ? 'on' : 'off'}${verify ? ' + verification' : ''}, context ${context ? 'on' : 'off'}`);
        const r = await runDots(tasks, { model: values.model, monitors, verify, context, samples: 1, maxTokens: int(values['max-tokens'], 'max-tokens', 1, 48), jobs, log: values.verbose ? log : undefined });
        log(`eval: ${summary(r)}`);
        reports.push(r);
      }
    }
    writeEvalDoc(reports, { markdown: values.out, svg: values.svg, tasksFile: positionals[0]!, command: `mgd eval report ${rest.join(' ')}` });
    out.stdout(values.json ? JSON.stringify(reports.map(({ perTask: _, ...r }) => r)) + '\n' : `wrote ${values.out} and ${values.svg}\n`);
    return 0;
  }
  throw new BadInputError(`unknown eval subcommand "${sub ?? ''}" (make-dots, dots, report)`);
}

function summary(r: DotsReport): string {
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  const kinds = Object.entries(r.diagnosticKinds)
    .filter(([, v]) => v.tasks > 0)
    .map(([k, v]) => `${k} ${v.tasks} (${v.siteTasks} in the completion)`)
    .join(', ');
  return `${r.tasks} tasks, monitors ${r.monitors ? 'on' : 'off'}${r.verify ? ' + verification' : ''}: compile ${pct(r.compileRate)}, NIM ${pct(r.nim)}, ISM ${pct(r.ism)}, exact line ${pct(r.exactLine)}, invalid member ${pct(r.invalidMemberRate)}, score@${r.samples} ${pct(r.scoreAtK)}; tasks with new diagnostics by kind: ${kinds || 'none'} (${(r.timings.wallMs / 1000).toFixed(1)} s)`;
}


