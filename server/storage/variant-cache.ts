/**
 * Recently made /view variants (JPEG previews, channel extractions), least recently used dropped first, bounded by
 * total bytes rather than entry count: a gallery asks for the same previews again and again, and re-encoding a large
 * PNG costs the event loop far more than keeping its small JPEG.
 */
export class VariantCache<V extends { bytes: Uint8Array }> {
  private entries = new Map<string, V>();
  private bytes = 0;
  hits = 0;
  constructor(private readonly maxBytes = 64 * 1024 * 1024) {}

  /** A key that changes whenever the file does (path, size, modification time) or the variant asked for does. */
  static key(path: string, size: number, mtimeMs: number, variant: unknown[]): string {
    return JSON.stringify([path, size, mtimeMs, ...variant]);
  }

  get(key: string): V | undefined {
    const v = this.entries.get(key);
    if (v) {
      this.entries.delete(key);
      this.entries.set(key, v);
      this.hits++;
    }
    return v;
  }

  set(key: string, v: V): void {
    if (v.bytes.length > this.maxBytes / 4) return; // one huge variant would evict everything else
    const old = this.entries.get(key);
    if (old) {
      this.bytes -= old.bytes.length;
      this.entries.delete(key);
    }
    this.entries.set(key, v);
    this.bytes += v.bytes.length;
    for (const [k, e] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(k);
      this.bytes -= e.bytes.length;
    }
  }

  get totalBytes(): number {
    return this.bytes;
  }
  clear(): void {
    this.entries.clear();
    this.bytes = 0;
  }
}
