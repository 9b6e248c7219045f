/**
 * A worker thread of `mgd eval dots --jobs N`: its own engine (one thread) and compile judges, fed one file's tasks
 * at a time by run-dots.ts.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { workerMain } from './run-dots.js';

if (!parentPort) throw new Error('dots-worker.js runs only as a worker thread');
await workerMain(parentPort, workerData);
