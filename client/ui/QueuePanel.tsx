// Running and pending prompts (GET /queue) with cancel, plus Interrupt for the running one.
import type { Session } from './session.js';

export function QueuePanel({ session }: { session: Session }) {
  const { queueRunning, queuePending } = session;
  return (
    <section className="panel" data-testid="queue-panel">
      <h4>
        Queue{' '}
        <span className="muted">
          ({queueRunning.length} running, {queuePending.length} pending)
        </span>
      </h4>
      {queueRunning.length === 0 && queuePending.length === 0 && <div className="muted">Nothing queued</div>}
      <ul>
        {queueRunning.map((item) => (
          <li key={item[1]} className="queue-item running" data-prompt-id={item[1]}>
            <span>#{item[0]} running</span>
            <button onClick={() => void session.interrupt()}>Interrupt</button>
          </li>
        ))}
        {queuePending.map((item) => (
          <li key={item[1]} className="queue-item pending" data-prompt-id={item[1]}>
            <span>#{item[0]} pending</span>
            <button className="cancel" onClick={() => void session.cancel(item[1])}>
              Cancel
            </button>
          </li>
        ))}
      </ul>
    </section>
  );
}
