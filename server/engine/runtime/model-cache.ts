/**
 * Loaded models under a byte budget, least-recently-used first out. Costs are estimates made before anything is
 * allocated (parameter count x dtype bytes), charged to the pool the model lives in: 'ram' for CPU sessions,
 * 'vram' for GPU sessions. A model bigger than its whole pool is refused with a message naming both sizes.
 * Example:
 *   const cache = new ModelCache({ ram: 8 * GiB, vram: Infinity });
 *   const s = await cache.acquire(key, { pool: 'ram', bytes }, 'sd1 unet (model.safetensors)', () => createSession());
 */

export type MemoryPool = 'ram' | 'vram';
export interface Cost {
  pool: MemoryPool;
  bytes: number;
}
export interface Disposable {
  dispose(): unknown;
}
export type Budget = Record<MemoryPool, number>;

export class ModelTooBigError extends Error {
  constructor(
    readonly model: string,
    readonly needed: number,
    readonly budget: number,
    readonly pool: MemoryPool,
  ) {
    super(
      `${model} needs ${formatBytes(needed)} but the whole ${pool === 'ram' ? 'RAM' : 'VRAM'} budget is ${formatBytes(budget)}` +
        ` (raise ${pool === 'ram' ? 'TCD_RAM_BUDGET_MB' : 'TCD_VRAM_BUDGET_MB'} or the engine's ${pool}BudgetMB option)`,
    );
    this.name = 'ModelTooBigError';
  }
}

interface Entry<V> {
  key: string;
  name: string;
  cost: Cost;
  value: V;
}

export class ModelCache<V extends Disposable> {
  /** Map iteration order is insertion order; a hit re-inserts, so the first entry is the least recently used. */
  private entries = new Map<string, Entry<V>>();
  private pending = new Map<string, Promise<V>>();
  /** names of evicted models, oldest first (kept short; tests and logs read it) */
  readonly evictions: string[] = [];

  constructor(
    readonly budget: Budget,
    private onEvict?: (name: string, cost: Cost) => void,
  ) {}

  used(pool: MemoryPool): number {
    let n = 0;
    for (const e of this.entries.values()) if (e.cost.pool === pool) n += e.cost.bytes;
    return n;
  }

  /** keys from least to most recently used */
  keys(): string[] {
    return [...this.entries.keys()];
  }
  has(key: string): boolean {
    return this.entries.has(key);
  }

  /** Returns the cached value (marking it most recent) or loads it, evicting the least recently used first. */
  async acquire(key: string, cost: Cost, name: string, load: () => Promise<V>): Promise<V> {
    const hit = this.entries.get(key);
    if (hit) {
      this.entries.delete(key);
      this.entries.set(key, hit);
      return hit.value;
    }
    const inFlight = this.pending.get(key);
    if (inFlight) return inFlight;
    const limit = this.budget[cost.pool];
    if (cost.bytes > limit) throw new ModelTooBigError(name, cost.bytes, limit, cost.pool);
    // registered before the first await, so a second caller for the same key waits for this load
    const p = (async () => {
      await this.makeRoom(cost);
      const value = await load();
      this.entries.set(key, { key, name, cost, value });
      return value;
    })();
    this.pending.set(key, p);
    try {
      return await p;
    } finally {
      this.pending.delete(key);
    }
  }

  /** Evicts least recently used entries of the same pool until `cost` fits. */
  private async makeRoom(cost: Cost): Promise<void> {
    const limit = this.budget[cost.pool];
    for (const e of [...this.entries.values()]) {
      if (this.used(cost.pool) + cost.bytes <= limit) return;
      if (e.cost.pool !== cost.pool) continue;
      await this.evict(e);
    }
  }

  private async evict(e: Entry<V>): Promise<void> {
    this.entries.delete(e.key);
    this.evictions.push(e.name);
    if (this.evictions.length > 100) this.evictions.shift();
    this.onEvict?.(e.name, e.cost);
    await e.value.dispose();
  }

  /** Unloads everything (POST /free); not counted as evictions. */
  async clear(): Promise<void> {
    const all = [...this.entries.values()];
    this.entries.clear();
    for (const e of all) await e.value.dispose();
  }
}

export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return 'unlimited';
  if (n >= 1024 ** 3) return `${(n / 1024 ** 3).toFixed(2)} GiB`;
  if (n >= 1024 ** 2) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}
