// Errors from validation (400 node_errors) and execution, plus file-loading problems.
import type { Session } from './session.js';

export function MessagesPanel({ session }: { session: Session }) {
  if (!session.messages.length) return null;
  return (
    <section className="panel messages" data-testid="messages">
      <h4>
        Messages{' '}
        <button className="link" onClick={() => session.clearMessages()}>
          clear
        </button>
      </h4>
      {session.messages.map((m, i) => (
        <pre key={i} className={m.kind}>
          {m.text}
        </pre>
      ))}
    </section>
  );
}
