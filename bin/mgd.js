#!/usr/bin/env node
// Thin launcher: the CLI lives in server/cli.ts, compiled to dist/ by `npm run build` (run by `npm ci` via prepare).
import { main } from '../dist/server/cli.js';

process.exitCode = await main(process.argv.slice(2));
