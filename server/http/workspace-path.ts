/**
 * A request's file path, confined to the workspace. Checking the name is not enough: `src/link.ts` may be a symbolic
 * link (or sit in a linked directory) that leads outside, and the engine's analysis would open what it points at. So
 * the path must stay inside by name, and again once the file, or for a file not saved yet its nearest existing
 * parent, has its links resolved against the workspace's own real directory.
 */
import fs from 'node:fs';
import path from 'node:path';

/** `filepath` resolved against `workspace` (absolute), or an Error with a one-line reason. */
export function workspacePath(workspace: string, filepath: string): string {
  const shown = JSON.stringify(filepath);
  if (filepath.includes('\0')) throw new Error(`filepath ${shown} contains a NUL character`);
  const abs = path.resolve(workspace, filepath);
  if (!inside(workspace, abs)) throw new Error(`filepath ${shown} is outside the workspace`);
  let realWorkspace: string;
  try {
    realWorkspace = fs.realpathSync(workspace);
  } catch (e) {
    throw new Error(`the workspace ${JSON.stringify(workspace)} cannot be read: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  const real = realPathOf(abs, workspace);
  if (real === null) throw new Error(`filepath ${shown} is a symbolic link that cannot be resolved; refused`);
  if (!inside(realWorkspace, real)) throw new Error(`filepath ${shown} leads through a symbolic link to outside the workspace; refused`);
  return abs;
}

/**
 * The real path of `abs`: of the file itself, or of its nearest existing parent with the missing names appended.
 * Null for a link that exists but does not resolve (dangling, a loop, unreadable): its target could appear later.
 */
function realPathOf(abs: string, stopAt: string): string | null {
  const missing: string[] = [];
  let p = abs;
  for (;;) {
    try {
      return path.join(fs.realpathSync(p), ...missing);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') return null;
      if (exists(p)) return null; // lstat sees it, realpath cannot follow it: a dangling link
      if (p === stopAt || path.dirname(p) === p) return null; // the workspace itself is gone
      missing.unshift(path.basename(p));
      p = path.dirname(p);
    }
  }
}

function exists(p: string): boolean {
  try {
    fs.lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

function inside(dir: string, p: string): boolean {
  const rel = path.relative(dir, p);
  return rel === '' || (!path.isAbsolute(rel) && rel !== '..' && !rel.startsWith(`..${path.sep}`));
}
