/**
 * `tcd-studio worker --queue redis://HOST:PORT [--device N] [--concurrency 1] ...` (`worker --help` lists the options):
 * one farm worker process; folders default like `serve`.
 */
import type { Settings } from '../settings.js';
import { engineOptions } from '../host.js';
import { FarmWorker } from './worker.js';
import { loadExtraModelPaths } from '../storage/extra-model-paths.js';

export async function workerCommand(s: Settings): Promise<number> {
  if (!s.queue) {
    console.error('worker needs --queue redis://HOST:PORT');
    return 2;
  }
  const w = await FarmWorker.start({
    queue: s.queue,
    modelsDir: s.models,
    extraModelPaths: loadExtraModelPaths(s.extraModelPaths).paths,
    outputDir: s.output,
    inputDir: s.input,
    tempDir: s.temp,
    engine: engineOptions(s, () => {}),
    concurrency: s.concurrency,
    id: s.workerId,
    affinity: s.affinity,
    lockMs: s.lockMs,
    stalledIntervalMs: s.stalledMs,
    maxStalledCount: s.maxStalled,
    keepModels: s.keepModels,
    previews: s.previews,
    maxWaitMs: s.maxWaitMs,
    trace: s.farmTrace,
  });
  const stop = async () => {
    await w.close(true);
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  return new Promise<number>(() => {});
}
