/**
 * The server's recent console output, kept for ComfyUI's frontend (its bottom panel's Logs terminal reads
 * /internal/logs/raw, then gets each new line over the websocket while subscribed).
 * Example: const logs = new LogBuffer(); const undo = captureProcessOutput(logs); logs.onEntry((e) => ...);
 */

/** One piece of output: t = ISO time it was written, m = the text as written (with its newline). */
export interface LogEntry {
  t: string;
  m: string;
}

export class LogBuffer {
  private readonly entries: LogEntry[] = [];
  private readonly listeners = new Set<(e: LogEntry) => void>();

  /** keeps the last `max` entries (ComfyUI keeps a few hundred too: the panel shows recent output, not a file) */
  constructor(private readonly max = 300) {}

  add(text: string): void {
    if (!text) return;
    const e = { t: new Date().toISOString(), m: text };
    this.entries.push(e);
    if (this.entries.length > this.max) this.entries.splice(0, this.entries.length - this.max);
    for (const fn of this.listeners) fn(e);
  }

  /** A log line (a message without its newline). */
  line(message: string): void {
    this.add(message.endsWith('\n') ? message : `${message}\n`);
  }

  all(): LogEntry[] {
    return [...this.entries];
  }

  /** Calls fn with each new entry; returns the unsubscribe function. */
  onEntry(fn: (e: LogEntry) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }
}

/**
 * Copies everything the process writes to stdout and stderr into `logs` (still writing it out), as ComfyUI
 * captures its own output for the frontend. Returns a function that restores the streams.
 */
export function captureProcessOutput(logs: LogBuffer): () => void {
  const restore: (() => void)[] = [];
  for (const stream of [process.stdout, process.stderr]) {
    const original = stream.write;
    stream.write = function (this: NodeJS.WriteStream, chunk: unknown, ...rest: unknown[]): boolean {
      try {
        logs.add(typeof chunk === 'string' ? chunk : Buffer.from(chunk as Uint8Array).toString('utf8'));
      } catch {
        /* the copy is best effort: output itself must never fail because of it */
      }
      return (original as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
    } as typeof stream.write;
    restore.push(() => {
      stream.write = original;
    });
  }
  return () => restore.forEach((f) => f());
}
