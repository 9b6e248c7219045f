// The build's second step: kernels/*.wgsl are read at run time beside their dispatchers, so dist/kernels needs them.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(root, 'dist', 'kernels');
fs.mkdirSync(out, { recursive: true });
for (const f of fs.readdirSync(path.join(root, 'kernels'))) if (f.endsWith('.wgsl')) fs.copyFileSync(path.join(root, 'kernels', f), path.join(out, f));
