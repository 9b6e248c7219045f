/**
 * Type-oracle latency at a dot, warm, in a large TypeScript workspace. The workspace is generated (deterministic,
 * synthetic: modules of classes that import and use each other's types, generics, interfaces), since no real
 * project of that size can be fetched here; `lines` and `files` are reported with the figures.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LspOracle, type LanguageServerConfig } from '../analysis/lsp-oracle.js';
import type { TypeOracle } from '../analysis/oracle.js';
import { TypeScriptOracle } from '../analysis/ts-oracle.js';

function makeWorkspace(dir: string, files: number): number {
  fs.mkdirSync(path.join(dir, 'src'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { strict: true, target: 'ES2022', module: 'NodeNext', noEmit: true }, include: ['src'] }));
  let lines = 0;
  for (let f = 0; f < files; f++) {
    const dep = f > 0 ? f - 1 : null;
    const parts: string[] = [];
    if (dep !== null) parts.push(`import { Service${dep}, type Record${dep} } from './module${dep}.js';`);
    parts.push(`export interface Record${f} {\n  id: number;\n  name: string;\n  tags: string[];\n  parent?: Record${f};\n}`);
    parts.push(`export class Service${f}<T extends Record${f} = Record${f}> {\n  private items = new Map<number, T>();`);
    for (let m = 0; m < 40; m++) {
      parts.push(`  /** Operation ${m} of service ${f}. */\n  operation${m}(input: T, count: number): T[] {\n    const out: T[] = [];\n    for (let i = 0; i < count; i++) {\n      if (input.tags.length > i) out.push(input);\n    }\n    this.items.set(input.id + ${m}, input);\n    return out;\n  }`);
    }
    if (dep !== null) parts.push(`  link(other: Service${dep}, r: Record${dep}): number {\n    return other.operation0(r, 1).length;\n  }`);
    parts.push('}');
    const text = parts.join('\n') + '\n';
    lines += text.split('\n').length;
    fs.writeFileSync(path.join(dir, 'src', `module${f}.ts`), text);
  }
  return lines;
}

export interface OracleBenchOptions {
  files?: number;
  queries?: number;
  /** Also measure this language server on the same sites (e.g. TypeScript 7's `tsgo --lsp --stdio`). */
  languageServer?: LanguageServerConfig;
}

interface Timings {
  oracle: string;
  coldMs: number;
  warmP50Ms: number;
  warmP95Ms: number;
}

/**
 * Latency of a member question at a dot, warm, in a large workspace: the in-process TypeScript service, and a
 * language server on the same sites if one is given, with whether the two answer the same.
 */
export async function benchOracle(o: OracleBenchOptions = {}) {
  const files = o.files ?? 140;
  const queries = o.queries ?? 60;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mgd-oracle-bench-'));
  try {
    const lines = makeWorkspace(dir, files);
    const target = `src/module${files - 1}.ts`;
    const base = fs.readFileSync(path.join(dir, target), 'utf8');
    // The completed document: the module with a new function that dereferences a cross-file type at the end.
    const doc = (i: number) => `${base}\nexport function probe${i}(s: Service${files - 2}, r: Record${files - 2}) {\n  return s.operation${i % 40}(r, 2)[0]!.`;
    const answers = new Map<string, (string[] | null)[]>();
    const run = async (oracle: TypeOracle): Promise<Timings> => {
      const got: (string[] | null)[] = [];
      let t = performance.now();
      got.push(await oracle.members(target, doc(0) + '\n}\n', doc(0).length));
      const coldMs = performance.now() - t;
      const warm: number[] = [];
      for (let i = 1; i <= queries; i++) {
        t = performance.now();
        const names = await oracle.members(target, doc(i) + '\n}\n', doc(i).length);
        warm.push(performance.now() - t);
        if (!names?.includes('tags')) throw new Error(`oracle bench: ${oracle.name} did not list the members of Record at the probe`);
        got.push(names);
      }
      answers.set(oracle.name, got);
      warm.sort((a, b) => a - b);
      const pct = (p: number) => Math.round(warm[Math.min(warm.length - 1, Math.floor(warm.length * p))]! * 100) / 100;
      return { oracle: oracle.name, coldMs: Math.round(coldMs), warmP50Ms: pct(0.5), warmP95Ms: pct(0.95) };
    };
    const ts = new TypeScriptOracle(dir);
    const inProcess = await run(ts).finally(() => ts.dispose());
    const first = answers.get(ts.name)![0];
    const result: Record<string, unknown> = { workspace: 'synthetic', files, lines, members: first?.length ?? 0, queries, ...inProcess };
    if (o.languageServer) {
      const lsp = new LspOracle(dir, o.languageServer);
      try {
        const other = await run(lsp);
        const mine = answers.get(ts.name)!;
        const theirs = answers.get(lsp.name)!;
        const same = mine.filter((a, i) => JSON.stringify(a) === JSON.stringify(theirs[i])).length;
        result.languageServer = { ...other, sameAnswers: `${same}/${mine.length}` };
      } finally {
        await lsp.dispose();
      }
    }
    return result;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
