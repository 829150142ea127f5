/**
 * Entry of a server in its own process (see child-harness.ts): an attack that kills the server kills only this
 * process, so the test can see it die. Options come as JSON in TCD_CHILD_OPTS; prints {"url"} once listening.
 * `real: true` runs the real node registry (nodes/) instead of the stub nodes; the engine starts only if a prompt
 * needs a model. `serve: true` runs the `serve` command's server (demo model, engine in a child process).
 */
import { join } from 'node:path';
import { startStubServer } from '../executor/stub-server.js';
import { startServer } from '../../server/app/server.js';
import { createRegistry } from '../../nodes/index.js';
import { makeServices, serve } from '../../server/host.js';
import { settingsFromEnv } from '../../server/settings.js';
import type { NodeServices } from '../../nodes/services.js';

interface ChildOptions {
  root: string;
  token?: string;
  slowDelayMs?: number;
  maxBodyBytes?: number;
  real?: boolean;
  serve?: boolean;
}
const o = JSON.parse(process.env.TCD_CHILD_OPTS ?? '{}') as ChildOptions;

async function startReal() {
  const root = o.root,
    dataDir = join(root, 'data');
  return startServer<NodeServices>({
    host: '127.0.0.1',
    port: 0,
    dataDir,
    modelsDir: join(root, 'models'),
    outputDir: join(root, 'output'),
    inputDir: join(root, 'input'),
    tempDir: join(root, 'temp'),
    workflowsDir: join(root, 'workflows'),
    registry: createRegistry(),
    log: () => {},
    token: o.token,
    maxBodyBytes: o.maxBodyBytes,
    makeServices: ({ models, dirs }) => makeServices(models, dirs, { dataDir, log: () => {} }, false),
    free: async (s) => {
      await s.engine().free();
    },
  });
}

/** The `serve` command's server: demo checkpoint, engine in a child process (its defaults are what is tested). */
async function startServe() {
  const r = o.root;
  return serve({
    ...settingsFromEnv(process.env),
    port: 0,
    models: join(r, 'models'),
    data: join(r, 'data'),
    output: join(r, 'output'),
    input: join(r, 'input'),
    temp: join(r, 'temp'),
    log: (m) => process.stderr.write(`${m}\n`),
  });
}

const s = o.serve ? await startServe() : o.real ? await startReal() : await startStubServer(o);
process.stdout.write(`${JSON.stringify({ url: s.url })}\n`);
process.on('SIGTERM', () => {
  void s.close().finally(() => process.exit(0));
});
