/**
 * Dot-completion tasks, one JSON object per line (the format of design.md): the position is just after a member
 * access's `.`, the model completes the rest of that line, `truth` is what the file had there.
 */
import fs from 'node:fs';
import { BadInputError, oneLine } from '../errors.js';
import { parsePackageSpec } from './packages.js';

export const TAGS = ['cross-file', 'npm-package', 'lib', 'same-file', 'generic', 'this-member', 'optional-chaining', 'call', 'property'] as const;
export type Tag = (typeof TAGS)[number];

export interface DotTask {
  /** `name@version`, exact. */
  package: string;
  /** Relative to the package root, `/`-separated. */
  file: string;
  /** 0-based line and UTF-16 character just after the `.`. */
  line: number;
  character: number;
  /** The rest of the line after the `.` in the original file. */
  truth: string;
  /** The expression before the dot. */
  receiver: string;
  tags: Tag[];
}

export function formatTasks(tasks: DotTask[]): string {
  return tasks.map((t) => JSON.stringify(t)).join('\n') + (tasks.length ? '\n' : '');
}

/** Reads a tasks file; a malformed line is a one-line error naming the file and line. */
export function readTasks(file: string): DotTask[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new BadInputError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? oneLine(e)}`);
  }
  return parseTasks(text, file);
}

export function parseTasks(text: string, name = 'tasks'): DotTask[] {
  const tasks: DotTask[] = [];
  text.split('\n').forEach((raw, i) => {
    if (!raw.trim()) return;
    const where = `${name}:${i + 1}`;
    let v: unknown;
    try {
      v = JSON.parse(raw);
    } catch (e) {
      throw new BadInputError(`${where}: not JSON (${oneLine(e)})`);
    }
    tasks.push(checkTask(v, where));
  });
  if (!tasks.length) throw new BadInputError(`${name}: no tasks`);
  return tasks;
}

function checkTask(v: unknown, where: string): DotTask {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new BadInputError(`${where}: a task must be a JSON object`);
  const o = v as Record<string, unknown>;
  const str = (k: string) => {
    if (typeof o[k] !== 'string') throw new BadInputError(`${where}: "${k}" must be a string`);
    return o[k] as string;
  };
  const nat = (k: string) => {
    if (!Number.isInteger(o[k]) || (o[k] as number) < 0) throw new BadInputError(`${where}: "${k}" must be an integer >= 0`);
    return o[k] as number;
  };
  const pkg = str('package');
  try {
    parsePackageSpec(pkg);
  } catch (e) {
    throw new BadInputError(`${where}: ${oneLine(e)}`);
  }
  const file = str('file');
  if (file.startsWith('/') || file.split('/').includes('..')) throw new BadInputError(`${where}: "file" must be a path inside the package`);
  const tags = o.tags === undefined ? [] : o.tags;
  if (!Array.isArray(tags) || tags.some((t) => !(TAGS as readonly unknown[]).includes(t))) throw new BadInputError(`${where}: "tags" must be a list of ${TAGS.join(', ')}`);
  return { package: pkg, file, line: nat('line'), character: nat('character'), truth: str('truth'), receiver: str('receiver'), tags: tags as Tag[] };
}
