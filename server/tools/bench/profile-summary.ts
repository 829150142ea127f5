/**
 * Summarises onnxruntime profile files (TCD_ORT_PROFILE_DIR): total microseconds and call counts per event category
 * and operator (Node events: op_name and provider; WebGPU/CUDA kernel events: their kernel name), largest first.
 * Used to say what limits a step from measurement rather than guesswork.
 * Example: node dist/server/tools/bench/profile-summary.js /tmp/prof/*.json > summary.json
 */
import { readFileSync } from 'node:fs';

interface ProfileEvent {
  cat?: string;
  name?: string;
  dur?: number;
  args?: Record<string, unknown>;
}

export interface OpTotal {
  cat: string;
  op: string;
  provider: string;
  us: number;
  count: number;
}

/** Aggregates one profile's events; `top` rows per category. */
export function summariseProfile(
  events: ProfileEvent[],
  top = 40,
): { totalsByCat: Record<string, number>; ops: OpTotal[]; samples: ProfileEvent[] } {
  const samples: ProfileEvent[] = [];
  const seen = new Map<string, number>();
  const rows = new Map<string, OpTotal>();
  const totalsByCat: Record<string, number> = {};
  for (const e of events) {
    if (typeof e.dur !== 'number' || !e.cat || e.cat === 'Session') continue;
    if ((seen.get(e.cat) ?? 0) < 3) {
      samples.push(e);
      seen.set(e.cat, (seen.get(e.cat) ?? 0) + 1);
    }
    // Node events carry op_name; GPU kernel events are named after the node ('scope/path/OpType_12'), so the op type is
    // the last path segment without its counter
    const last =
      (e.name ?? '?')
        .replace(/_kernel_time$/, '')
        .split('/')
        .pop() ?? '?';
    const op = String(e.args?.op_name ?? last.replace(/_\d+$/, '').replace(/^(.*?)(&.*)?$/, '$1'));
    const provider = String(e.args?.provider ?? '');
    const k = `${e.cat}|${op}|${provider}`;
    const r = rows.get(k) ?? { cat: e.cat, op, provider, us: 0, count: 0 };
    r.us += e.dur;
    r.count++;
    rows.set(k, r);
    totalsByCat[e.cat] = (totalsByCat[e.cat] ?? 0) + e.dur;
  }
  const byCat = new Map<string, OpTotal[]>();
  for (const r of rows.values()) byCat.set(r.cat, [...(byCat.get(r.cat) ?? []), r]);
  const ops = [...byCat.values()].flatMap((rs) => rs.sort((a, b) => b.us - a.us).slice(0, top));
  return { totalsByCat, ops, samples };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const out: Record<string, unknown> = {};
  for (const f of process.argv.slice(2)) {
    const events = JSON.parse(readFileSync(f, 'utf8')) as ProfileEvent[];
    out[f] = summariseProfile(events);
  }
  console.log(JSON.stringify(out, null, 1));
}
