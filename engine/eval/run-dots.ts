/**
 * Running dot-completion tasks: each task's file is completed at its site by the engine (the rest of the line,
 * greedy for one sample, seeded samples at temperature 0.8 for k > 1), and the completed file is judged by
 * typescript@6 in the task's workspace (metrics.ts says what is measured).
 *
 * Tasks are run file by file, so the engine's resident KV cache and the type checker's program stay warm between the
 * sites of one file. The engine runs one request at a time; `jobs` > 1 runs that many workers (worker_threads), each
 * with its own engine, oracle and judge, handing out one file's tasks at a time.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import type ts from 'typescript';
import { Engine } from '../engine.js';
import { TypeScriptOracle } from '../analysis/ts-oracle.js';
import { BadInputError } from '../errors.js';
import { ensureWorkspace, parsePackageSpec, type Workspace } from './packages.js';
import { diagnosticKey, invalidMember, matchMetrics, newDiagnostics, rates, type Rates, type SampleScore } from './metrics.js';
import { DIAGNOSTIC_KINDS, diagnosticKind, type DiagnosticKind } from '../verify/diagnostics.js';
import { TAGS, type DotTask, type Tag } from './tasks.js';

export interface DotsOptions {
  model?: string;
  monitors: boolean;
  /** Check before showing (engine/verify); default: with the monitors, as the engine does. */
  verify?: boolean;
  /** Repository context (the engine's retrieval from the workspace index); false sends no context blocks. */
  context: boolean;
  samples: number;
  maxTokens?: number;
  /** Parallel workers (each its own engine with `threads` threads); default 1. */
  jobs?: number;
  threads?: number;
  log?: (line: string) => void;
}

export interface TaskResult {
  package: string;
  file: string;
  line: number;
  character: number;
  tags: Tag[];
  truth: string;
  completions: string[];
  samples: SampleScore[];
  /** New diagnostics of the first sample (at most 3), for reading failures. */
  newDiagnostics: string[];
  /** The first sample's new diagnostics counted by kind (all of them, not only the first 3). */
  diagnosticKinds: Partial<Record<DiagnosticKind, number>>;
  /** Of those, the ones that start inside the completion (at the site the monitors watch, not in the lines after it). */
  siteKinds: Partial<Record<DiagnosticKind, number>>;
  /** What the verifier did for the first sample (engine/verify's status). */
  verify: string;
  monitor: { triggers: number; interventions: number; errors: number };
  /** Repository context in the first sample's prompt: blocks retrieved and tokens that fit. */
  context: { blocks: number; tokens: number };
  ms: number;
}

export interface DotsReport extends Rates {
  samples: number;
  monitors: boolean;
  verify: boolean;
  /**
   * Per kind of new diagnostic (first sample): tasks with at least one, and how many there were; `siteTasks`: tasks
   * with one that starts inside the completion itself.
   */
  diagnosticKinds: Record<DiagnosticKind, { tasks: number; diagnostics: number; siteTasks: number }>;
  /** The verifier's statuses over the tasks (first sample). */
  verifyStatuses: Record<string, number>;
  context: boolean;
  model: string;
  perTag: Partial<Record<Tag, Rates>>;
  perTask: TaskResult[];
  timings: { wallMs: number; setupMs: number; jobs: number; threadsPerJob: number | null };
}

/** Checks that the tasks still match their files (a stale or hand-edited task is bad input, not a zero score). */
export function siteOffset(task: DotTask, text: string, where: string): number {
  const lines = text.split('\n');
  const line = lines[task.line];
  if (line === undefined || task.character > line.length) throw new BadInputError(`${where}: ${task.file}:${task.line + 1}:${task.character} is outside the file`);
  if (line[task.character - 1] !== '.') throw new BadInputError(`${where}: ${task.file}:${task.line + 1}:${task.character} is not just after a "."`);
  const rest = line.slice(task.character).replace(/\r$/, '');
  if (rest !== task.truth) throw new BadInputError(`${where}: the truth does not match ${task.package} ${task.file}:${task.line + 1} (stale task?)`);
  let offset = 0;
  for (let i = 0; i < task.line; i++) offset += lines[i]!.length + 1;
  return offset + task.character;
}

/** Compile checks in one workspace: typescript@6 in process, the original file's diagnostics cached per file. */
export class CompileJudge {
  private readonly oracle: TypeScriptOracle;
  private readonly originals = new Map<string, ts.Diagnostic[]>();

  constructor(readonly workspace: string) {
    this.oracle = new TypeScriptOracle(workspace);
  }

  judge(file: string, original: string, completed: string, offset: number): { compiles: boolean; invalidMember: boolean; added: ts.Diagnostic[] } {
    let before = this.originals.get(file);
    if (!before) this.originals.set(file, (before = this.oracle.diagnostics(file, original)));
    const added = newDiagnostics(before, this.oracle.diagnostics(file, completed));
    return { compiles: added.length === 0, invalidMember: invalidMember(added, offset), added };
  }

  dispose(): void {
    this.oracle.dispose();
  }
}

/** Runs `tasks` and aggregates; workspaces are built (or found in the cache) first. */
export async function runDots(tasks: DotTask[], opts: DotsOptions): Promise<DotsReport> {
  const t0 = performance.now();
  const workspaces = await prepareWorkspaces(tasks, opts.log);
  const groups = groupByFile(tasks);
  // Validate every task before spending minutes on the first ones.
  for (const g of groups) {
    const text = readSource(workspaces.get(g.package)!, g.file);
    for (const { task, index } of g.tasks) siteOffset(task, text, `task ${index + 1}`);
  }
  const setupMs = performance.now() - t0;
  const jobs = Math.max(1, Math.min(opts.jobs ?? 1, groups.length));
  const results: TaskResult[] = new Array(tasks.length);
  let done = 0;
  const progress = (n: number) => {
    done += n;
    opts.log?.(`eval: ${done}/${tasks.length} tasks`);
  };
  const settings: WorkerSettings = { model: opts.model, monitors: opts.monitors, verify: opts.verify ?? opts.monitors, context: opts.context, samples: opts.samples, maxTokens: opts.maxTokens ?? 48, threads: jobs > 1 ? (opts.threads ?? 1) : opts.threads };
  let modelDir: string;
  if (jobs === 1) {
    const runner = await DotsRunner.create(settings, workspaces);
    modelDir = runner.modelDir;
    try {
      for (const g of groups) {
        for (const r of await runner.runGroup(g)) results[r.index] = r.result;
        progress(g.tasks.length);
      }
    } finally {
      await runner.dispose();
    }
  } else {
    modelDir = await runInWorkers(jobs, settings, workspaces, groups, results, progress);
  }
  const perTag: Partial<Record<Tag, Rates>> = {};
  for (const tag of TAGS) {
    const with_ = results.filter((r) => r.tags.includes(tag));
    if (with_.length) perTag[tag] = rates(with_.map((r) => r.samples));
  }
  const diagnosticKinds = Object.fromEntries(DIAGNOSTIC_KINDS.map((k) => [k, { tasks: 0, diagnostics: 0, siteTasks: 0 }])) as DotsReport['diagnosticKinds'];
  const verifyStatuses: Record<string, number> = {};
  for (const r of results) {
    for (const [k, n] of Object.entries(r.diagnosticKinds) as Array<[DiagnosticKind, number]>) {
      diagnosticKinds[k].tasks++;
      diagnosticKinds[k].diagnostics += n;
    }
    for (const k of Object.keys(r.siteKinds) as DiagnosticKind[]) diagnosticKinds[k].siteTasks++;
    verifyStatuses[r.verify] = (verifyStatuses[r.verify] ?? 0) + 1;
  }
  return {
    ...rates(results.map((r) => r.samples)),
    samples: opts.samples,
    monitors: opts.monitors,
    verify: settings.verify,
    diagnosticKinds,
    verifyStatuses,
    context: opts.context,
    model: modelDir,
    perTag,
    perTask: results,
    timings: { wallMs: Math.round(performance.now() - t0), setupMs: Math.round(setupMs), jobs, threadsPerJob: settings.threads ?? null },
  };
}

/** Builds (or finds) every package's workspace once, in the order the tasks name them. */
async function prepareWorkspaces(tasks: DotTask[], log?: (line: string) => void): Promise<Map<string, Workspace>> {
  const workspaces = new Map<string, Workspace>();
  for (const t of tasks) {
    if (workspaces.has(t.package)) continue;
    const ws = await ensureWorkspace(parsePackageSpec(t.package), log);
    if (`${ws.name}@${ws.version}` !== t.package) throw new BadInputError(`task package ${t.package} must be an exact version (it resolved to ${ws.version})`);
    workspaces.set(t.package, ws);
  }
  return workspaces;
}

interface FileGroup {
  package: string;
  file: string;
  tasks: Array<{ task: DotTask; index: number }>;
}

function groupByFile(tasks: DotTask[]): FileGroup[] {
  const groups = new Map<string, FileGroup>();
  tasks.forEach((task, index) => {
    const key = `${task.package}\0${task.file}`;
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { package: task.package, file: task.file, tasks: [] }));
    g.tasks.push({ task, index });
  });
  return [...groups.values()];
}

function readSource(ws: Workspace, file: string): string {
  try {
    return fs.readFileSync(path.join(ws.dir, file), 'utf8');
  } catch (e) {
    throw new BadInputError(`${ws.name}@${ws.version} has no file ${file} (${(e as NodeJS.ErrnoException).code ?? 'unreadable'})`);
  }
}

interface WorkerSettings {
  model?: string;
  monitors: boolean;
  verify: boolean;
  context: boolean;
  samples: number;
  maxTokens: number;
  threads?: number;
}

/** One engine and one judge per workspace: what a worker (or the main thread, for one job) runs tasks with. */
export class DotsRunner {
  private readonly judges = new Map<string, CompileJudge>();
  private readonly indexed = new Set<string>();

  private constructor(
    private readonly engine: Engine,
    private readonly settings: WorkerSettings,
    private readonly workspaces: Map<string, Workspace>,
  ) {}

  get modelDir(): string {
    return this.engine.model.dir;
  }

  static async create(settings: WorkerSettings, workspaces: Map<string, Workspace>): Promise<DotsRunner> {
    const engine = await Engine.load({ model: settings.model, threads: settings.threads });
    return new DotsRunner(engine, settings, workspaces);
  }

  async runGroup(g: FileGroup): Promise<Array<{ index: number; result: TaskResult }>> {
    const ws = this.workspaces.get(g.package)!;
    // The engine indexes a workspace for repository context in the background and uses what is indexed so far; the
    // eval waits for the whole index so that a task's context does not depend on when it ran.
    if (this.settings.context && !this.indexed.has(g.package)) {
      await this.engine.indexWorkspace(ws.dir);
      this.indexed.add(g.package);
    }
    let judge = this.judges.get(g.package);
    if (!judge) this.judges.set(g.package, (judge = new CompileJudge(ws.dir)));
    const text = readSource(ws, g.file);
    const out: Array<{ index: number; result: TaskResult }> = [];
    for (const { task, index } of g.tasks) out.push({ index, result: await this.runTask(task, text, judge, index) });
    return out;
  }

  private async runTask(task: DotTask, text: string, judge: CompileJudge, index: number): Promise<TaskResult> {
    const t0 = performance.now();
    const offset = siteOffset(task, text, `task ${index + 1}`);
    const lineEnd = text.indexOf('\n', offset);
    const prefix = text.slice(0, offset);
    const suffix = lineEnd < 0 ? '' : text.slice(lineEnd);
    const { samples: k } = this.settings;
    const completions: string[] = [];
    const samples: SampleScore[] = [];
    const monitor = { triggers: 0, interventions: 0, errors: 0 };
    let firstAdded: ts.Diagnostic[] = [];
    let firstAtSite: ts.Diagnostic[] = [];
    let verify = 'off';
    let context = { blocks: 0, tokens: 0 };
    for (let s = 0; s < k; s++) {
      const r = await this.engine.complete({
        prefix,
        suffix,
        filePath: task.file,
        workspace: this.workspaces.get(task.package)!.dir,
        monitors: this.settings.monitors,
        verify: this.settings.verify,
        // Without context: explicitly no blocks. With it, the engine's default: retrieval from the workspace's index.
        ...(this.settings.context ? {} : { context: [] }),
        stop: 'line',
        maxTokens: this.settings.maxTokens,
        temperature: k === 1 ? 0 : 0.8,
        seed: s,
      });
      // A completion that runs past the line (a leading newline is allowed by the stop rule) is judged as written.
      const completion = r.text;
      completions.push(completion);
      monitor.triggers += r.monitor.triggers;
      monitor.interventions += r.monitor.interventions;
      monitor.errors += r.monitor.errors;
      const judged = judge.judge(task.file, text, prefix + completion + suffix, offset);
      if (s === 0) {
        firstAdded = judged.added;
        firstAtSite = judged.added.filter((d) => d.start !== undefined && d.start >= offset && d.start <= offset + completion.length);
        verify = r.verify.status;
        context = { blocks: r.context.blocks, tokens: r.context.tokens };
      }
      samples.push({ ...matchMetrics(completion, task.truth), compiles: judged.compiles, invalidMember: judged.invalidMember });
    }
    return {
      package: task.package,
      file: task.file,
      line: task.line,
      character: task.character,
      tags: task.tags,
      truth: task.truth,
      completions,
      samples,
      newDiagnostics: firstAdded.slice(0, 3).map(diagnosticKey),
      diagnosticKinds: countKinds(firstAdded),
      siteKinds: countKinds(firstAtSite),
      verify,
      monitor,
      context,
      ms: Math.round(performance.now() - t0),
    };
  }

  async dispose(): Promise<void> {
    for (const j of this.judges.values()) j.dispose();
    await this.engine.dispose();
  }
}

function countKinds(added: readonly ts.Diagnostic[]): Partial<Record<DiagnosticKind, number>> {
  const kinds: Partial<Record<DiagnosticKind, number>> = {};
  for (const d of added) kinds[diagnosticKind(d.code)] = (kinds[diagnosticKind(d.code)] ?? 0) + 1;
  return kinds;
}

// ---- workers ----------------------------------------------------------------------------------------------------

type ToWorker = { type: 'group'; group: FileGroup } | { type: 'stop' };
type FromWorker =
  | { type: 'ready'; modelDir: string }
  | { type: 'done'; results: Array<{ index: number; result: TaskResult }> }
  | { type: 'error'; message: string; bad: boolean };

/** The worker's entry: dots-worker.js beside this module; from sources (vitest), the built copy in dist/. */
function workerFile(): URL {
  const here = new URL(import.meta.url);
  if (here.pathname.endsWith('.ts')) {
    // Running from sources (vitest): the worker must be plain JavaScript, so use the build in dist/.
    const root = path.resolve(path.dirname(here.pathname), '..', '..');
    const built = path.join(root, 'dist', 'engine', 'eval', 'dots-worker.js');
    if (!fs.existsSync(built)) throw new Error(`jobs > 1 needs the build (${built}); run npm run build`);
    return pathToFileURL(built);
  }
  return new URL('./dots-worker.js', import.meta.url);
}

async function runInWorkers(
  jobs: number,
  settings: WorkerSettings,
  workspaces: Map<string, Workspace>,
  groups: FileGroup[],
  results: TaskResult[],
  progress: (n: number) => void,
): Promise<string> {
  // Biggest files first, so the last group handed out is a small one and workers finish together.
  const queue = [...groups].sort((a, b) => b.tasks.length - a.tasks.length);
  let modelDir = '';
  const file = workerFile();
  await Promise.all(
    Array.from({ length: jobs }, () =>
      new Promise<void>((resolve, reject) => {
        const worker = new Worker(file, { workerData: { settings, workspaces: [...workspaces.entries()] } });
        let failed = false;
        const next = () => {
          const group = queue.shift();
          worker.postMessage(group ? ({ type: 'group', group } satisfies ToWorker) : ({ type: 'stop' } satisfies ToWorker));
        };
        worker.on('message', (m: FromWorker) => {
          if (m.type === 'ready') {
            modelDir = m.modelDir;
            next();
          } else if (m.type === 'done') {
            for (const r of m.results) results[r.index] = r.result;
            progress(m.results.length);
            next();
          } else {
            failed = true;
            queue.length = 0; // the others stop after their current file
            void worker.terminate();
            reject(m.bad ? new BadInputError(m.message) : new Error(m.message));
          }
        });
        worker.on('error', (e) => {
          failed = true;
          queue.length = 0;
          void worker.terminate();
          reject(e);
        });
        worker.on('exit', (code) => (failed ? undefined : code === 0 ? resolve() : reject(new Error(`eval worker exited with code ${code}`))));
      }),
    ),
  );
  return modelDir;
}

/** The worker side: loads a runner, answers groups until told to stop. */
export async function workerMain(port: import('node:worker_threads').MessagePort, data: { settings: WorkerSettings; workspaces: Array<[string, Workspace]> }): Promise<void> {
  let runner: DotsRunner;
  try {
    runner = await DotsRunner.create(data.settings, new Map(data.workspaces));
  } catch (e) {
    port.postMessage({ type: 'error', message: e instanceof Error ? e.message : String(e), bad: e instanceof BadInputError } satisfies FromWorker);
    return;
  }
  port.postMessage({ type: 'ready', modelDir: runner.modelDir } satisfies FromWorker);
  await new Promise<void>((resolve) => {
    port.on('message', (m: ToWorker) => {
      if (m.type === 'stop') {
        void runner.dispose().finally(() => {
          port.close();
          resolve();
        });
        return;
      }
      runner.runGroup(m.group).then(
        (results) => port.postMessage({ type: 'done', results } satisfies FromWorker),
        (e: unknown) => port.postMessage({ type: 'error', message: e instanceof Error ? e.message : String(e), bad: e instanceof BadInputError } satisfies FromWorker),
      );
    });
  });
}

/**
 * Default parallelism: one job per core, each engine with one thread. Measured on the 2-core machine, dev set (320
 * tasks), monitors on: 115 s with one job (the engine on both cores), 103 s with two; same completions either way.
 * Much of a task's time is the judge (typescript@6, single-threaded) and the native oracle, which two jobs overlap.
 */
export function defaultJobs(): number {
  return Math.max(1, os.availableParallelism());
}
