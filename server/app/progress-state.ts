/**
 * ComfyUI's `progress_state` event: after each change, the state of every node of the running prompt that has
 * started so far ({value, max, state: running|finished|error}). Derived here from the events the executor already
 * sends, so every queue backend (embedded, farm) gets it. Its frontend draws per-node progress from it.
 * Example: const p = new ProgressStates(); for (const ev of events) { const s = p.next(ev); if (s) send(s); }
 */
import { event, type NodeProgressState, type ServerEvent } from '../../protocol/events.js';

export class ProgressStates {
  private prompts = new Map<string, Map<string, NodeProgressState>>();

  /** The progress_state event this event leads to, or null. */
  next(ev: ServerEvent): ServerEvent | null {
    const d = ev.data as { prompt_id?: string };
    const promptId = d.prompt_id;
    if (!promptId) return null;
    if (ev.type === 'execution_start') {
      this.prompts.set(promptId, new Map());
      return null;
    }
    const nodes = this.prompts.get(promptId);
    if (!nodes) return null;
    const entry = (id: string): NodeProgressState => {
      let n = nodes.get(id);
      if (!n) {
        n = {
          value: 0,
          max: 1,
          state: 'pending',
          node_id: id,
          prompt_id: promptId,
          display_node_id: id,
          parent_node_id: null,
          real_node_id: id,
        };
        nodes.set(id, n);
      }
      return n;
    };
    const finishRunning = () => {
      for (const n of nodes.values())
        if (n.state === 'running') {
          n.state = 'finished';
          n.value = n.max;
        }
    };
    switch (ev.type) {
      case 'executing':
        if (ev.data.node === null) {
          this.prompts.delete(promptId);
          return null;
        }
        finishRunning(); // the executor runs one node at a time: a new node means the last one is done
        Object.assign(entry(ev.data.node), { state: 'running' });
        break;
      case 'progress':
        Object.assign(entry(ev.data.node), { value: ev.data.value, max: ev.data.max, state: 'running' });
        break;
      case 'executed': {
        const n = entry(ev.data.node);
        Object.assign(n, { state: 'finished', value: n.max });
        break;
      }
      case 'execution_success':
        finishRunning();
        break;
      case 'execution_error':
        entry(ev.data.node_id).state = 'error';
        break;
      default:
        return null;
    }
    const snapshot: Record<string, NodeProgressState> = {};
    for (const [id, n] of nodes) snapshot[id] = { ...n };
    return event('progress_state', { prompt_id: promptId, nodes: snapshot });
  }
}
