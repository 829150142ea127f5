// Finished prompts from the server's history: thumbnail, prompt text, seed, time and status, with load / re-run /
// delete. Clicking a thumbnail opens the lightbox.
import type { HistoryItem } from '../graph/history.js';
import type { Session } from './session.js';

function when(t: number | null): string {
  return t === null
    ? ''
    : new Date(t).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
}

function Item({ session, item }: { session: Session; item: HistoryItem }) {
  const first = item.images[0];
  const url = first ? session.api.viewUrl(first.image) : null;
  return (
    <li className={`history-item ${item.status}`} data-prompt-id={item.promptId}>
      {url ? (
        <button
          className="thumb"
          onClick={() => session.openLightbox(url)}
          title="open large"
          aria-label={`open image of #${item.number}`}
        >
          <img src={url} alt={first!.image.filename} loading="lazy" />
        </button>
      ) : (
        <span className="thumb empty">{item.status === 'success' ? 'no image' : item.status}</span>
      )}
      <div className="history-meta">
        <div className="history-text" title={item.text}>
          {item.text || <span className="muted">(no text prompt)</span>}
        </div>
        <div className="muted">
          #{item.number} · {item.seed !== null ? `seed ${item.seed} · ` : ''}
          {when(item.time)}
          {' · '}
          <span className={`status ${item.status}`}>{item.status}</span>
        </div>
        {item.error && <div className="history-error">{item.error}</div>}
        <div className="history-actions">
          <button onClick={() => session.loadHistory(item)}>Load</button>
          <button onClick={() => void session.rerun(item)}>Re-run</button>
          <button onClick={() => void session.deleteHistory(item)}>Delete</button>
        </div>
      </div>
    </li>
  );
}

export function HistoryPanel({ session }: { session: Session }) {
  return (
    <section className="panel" data-testid="history-panel">
      <h4>
        History <span className="muted">({session.history.length})</span>
      </h4>
      {session.history.length === 0 && <div className="muted">Nothing run yet</div>}
      <ul>
        {session.history.map((item) => (
          <Item key={item.promptId} session={session} item={item} />
        ))}
      </ul>
    </section>
  );
}
