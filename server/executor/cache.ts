/**
 * Output cache keyed by input signature: class + constant inputs + fingerprint + the signatures of linked
 * ancestors. A node re-runs only when its signature changes, so a new seed re-runs the sampler and what follows it,
 * never the loaders or text encoders. Least-recently-used entries beyond the limit are dropped, but never the ones
 * the latest prompt used.
 */
import { createHash } from 'node:crypto';

export interface CachedOutput {
  /** per output slot, the list of values (list-map.ts) */
  outputs: unknown[][];
  ui?: Record<string, unknown>;
}

export class OutputCache {
  private entries = new Map<string, CachedOutput>();
  constructor(private readonly maxEntries = 64) {}

  get(sig: string): CachedOutput | undefined {
    const e = this.entries.get(sig);
    if (e) {
      this.entries.delete(sig);
      this.entries.set(sig, e);
    }
    return e;
  }
  has(sig: string): boolean {
    return this.entries.has(sig);
  }
  set(sig: string, value: CachedOutput): void {
    this.entries.delete(sig);
    this.entries.set(sig, value);
  }
  get size(): number {
    return this.entries.size;
  }
  clear(): void {
    this.entries.clear();
  }

  /** Drop least-recently-used entries down to the limit, keeping those in `keep`. */
  trim(keep: Set<string>): void {
    for (const sig of this.entries.keys()) {
      if (this.entries.size <= Math.max(this.maxEntries, keep.size)) break;
      if (!keep.has(sig)) this.entries.delete(sig);
    }
  }
}

/** Stable JSON (sorted keys) so equal inputs give equal signatures. */
export function stableStringify(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'undefined';
  if (Array.isArray(v)) return `[${v.map(stableStringify).join(',')}]`;
  return `{${Object.keys(v as object)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${stableStringify((v as Record<string, unknown>)[k])}`)
    .join(',')}}`;
}

export function signatureOf(parts: unknown): string {
  return createHash('sha256').update(stableStringify(parts)).digest('hex').slice(0, 32);
}
