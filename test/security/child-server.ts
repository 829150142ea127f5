/**
 * Entry of a stub server in its own process (see child-harness.ts): an attack that kills the server kills only this
 * process, so the test can see it die. Options come as JSON in TCD_CHILD_OPTS; prints {"url"} once listening.
 */
import { startStubServer } from '../executor/stub-server.js';

const opts = JSON.parse(process.env.TCD_CHILD_OPTS ?? '{}') as { root: string; token?: string; slowDelayMs?: number; maxBodyBytes?: number };
const s = await startStubServer({ root: opts.root, token: opts.token, slowDelayMs: opts.slowDelayMs, maxBodyBytes: opts.maxBodyBytes });
process.stdout.write(`${JSON.stringify({ url: s.url })}\n`);
process.on('SIGTERM', () => { void s.close().finally(() => process.exit(0)); });
