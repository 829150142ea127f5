// Undo/redo as a stack of serialised graph snapshots: simple, and exact for every kind of edit.

/**
 * Snapshot history. Call `record(json)` after each change; identical consecutive snapshots are ignored.
 * @example const h = new UndoStack(); h.record(a); h.record(b); h.undo() // a
 */
export class UndoStack {
  private past: string[] = [];
  private future: string[] = [];
  private current: string | null = null;

  constructor(private readonly limit = 100) {}

  /** Resets history to a single state (after loading a workflow). */
  reset(snapshot: string): void {
    this.past = [];
    this.future = [];
    this.current = snapshot;
  }

  /** Records a new state; returns false when it equals the current one. */
  record(snapshot: string): boolean {
    if (snapshot === this.current) return false;
    if (this.current !== null) {
      this.past.push(this.current);
      if (this.past.length > this.limit) this.past.shift();
    }
    this.current = snapshot;
    this.future = [];
    return true;
  }

  /** Replaces the present state without an undo step (layout settling right after a load). */
  replacePresent(snapshot: string): void {
    this.current = snapshot;
  }

  /** The state to restore, or null when there is nothing to undo. */
  undo(): string | null {
    const prev = this.past.pop();
    if (prev === undefined || this.current === null) return null;
    this.future.push(this.current);
    this.current = prev;
    return prev;
  }

  redo(): string | null {
    const next = this.future.pop();
    if (next === undefined || this.current === null) return null;
    this.past.push(this.current);
    this.current = next;
    return next;
  }

  /** The snapshot of the present state (null before the first record). */
  get present(): string | null {
    return this.current;
  }
  /** How many steps undo (redo) can go. */
  get undoCount(): number {
    return this.past.length;
  }
  get redoCount(): number {
    return this.future.length;
  }
  get canUndo(): boolean {
    return this.past.length > 0;
  }
  get canRedo(): boolean {
    return this.future.length > 0;
  }
}
