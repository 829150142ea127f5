/**
 * Per-run view of onnxruntime profile files (TCD_ORT_PROFILE_DIR): session start-up events, every model_run's
 * duration, node placement (how many nodes of each op ran on each provider: CPU-placed nodes in a CUDA UNet show up
 * here), and for the first (cold) and last (warm) run the operators by total time and the slowest nodes. Says where a
 * cold first call goes (cuDNN algorithm search shows as slow first Conv runs) and what a warm step spends.
 * Example: node dist/server/tools/bench/profile-runs.js /tmp/prof/*unet*.json > runs.json
 */
import { readFileSync } from 'node:fs';

interface Ev {
  cat?: string;
  name?: string;
  ts?: number;
  dur?: number;
  args?: Record<string, unknown>;
}

const ms = (us: number) => Math.round(us / 100) / 10;

function opsOf(nodes: Ev[], top: number) {
  const byOp = new Map<string, { us: number; count: number }>();
  for (const e of nodes) {
    const k = `${String(e.args?.op_name ?? '?')}@${String(e.args?.provider ?? '?')}`;
    const r = byOp.get(k) ?? { us: 0, count: 0 };
    r.us += e.dur ?? 0;
    r.count++;
    byOp.set(k, r);
  }
  const ops = [...byOp.entries()]
    .sort((a, b) => b[1].us - a[1].us)
    .slice(0, top)
    .map(([op, r]) => ({ op, ms: ms(r.us), count: r.count }));
  const slowest = [...nodes]
    .sort((a, b) => (b.dur ?? 0) - (a.dur ?? 0))
    .slice(0, top)
    .map((e) => ({ node: (e.name ?? '').replace(/_kernel_time$/, ''), op: e.args?.op_name, ms: ms(e.dur ?? 0) }));
  return { totalMs: ms(nodes.reduce((a, e) => a + (e.dur ?? 0), 0)), ops, slowest };
}

export function profileRuns(events: Ev[], top = 15) {
  const session = events.filter((e) => e.cat === 'Session');
  const runs = session.filter((e) => e.name === 'model_run').sort((a, b) => (a.ts ?? 0) - (b.ts ?? 0));
  const nodes = events.filter((e) => e.cat === 'Node' && e.name?.endsWith('_kernel_time'));
  const inRun = (r: Ev) => nodes.filter((n) => (n.ts ?? 0) >= (r.ts ?? 0) && (n.ts ?? 0) <= (r.ts ?? 0) + (r.dur ?? 0));
  const placement: Record<string, Record<string, number>> = {};
  for (const n of runs.length ? inRun(runs[runs.length - 1]) : nodes) {
    const p = String(n.args?.provider ?? '?'),
      op = String(n.args?.op_name ?? '?');
    placement[p] ??= {};
    placement[p][op] = (placement[p][op] ?? 0) + 1;
  }
  return {
    startup: session
      .filter((e) => e.name !== 'model_run' && e.name !== 'SequentialExecutor::Execute')
      .map((e) => ({ name: e.name, ms: ms(e.dur ?? 0) })),
    runsMs: runs.map((r) => ms(r.dur ?? 0)),
    placement,
    first: runs.length ? opsOf(inRun(runs[0]), top) : null,
    last: runs.length > 1 ? opsOf(inRun(runs[runs.length - 1]), top) : null,
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const out: Record<string, unknown> = {};
  for (const f of process.argv.slice(2)) out[f] = profileRuns(JSON.parse(readFileSync(f, 'utf8')) as Ev[]);
  console.log(JSON.stringify(out, null, 1));
}
