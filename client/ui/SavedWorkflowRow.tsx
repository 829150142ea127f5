// One workflow saved on the server, as the Templates dialog lists it: Open, Rename (refused with a message when the
// name is taken; nothing is overwritten) and Delete (asked first, in the row).
import { useState } from 'react';
import { isWorkflowName } from './SaveDialog.js';
import type { Session } from './session.js';

type Mode = { kind: 'idle' } | { kind: 'renaming'; to: string } | { kind: 'deleting' };

export function SavedWorkflowRow({
  name,
  session,
  onOpen,
  onChanged,
}: {
  name: string;
  session: Session;
  onOpen: () => void;
  /** The server's list changed (renamed or deleted): read it again. */
  onChanged: () => void;
}) {
  const [mode, setMode] = useState<Mode>({ kind: 'idle' });
  const [error, setError] = useState<string | null>(null);
  const act = async (fn: () => Promise<void>) => {
    setError(null);
    try {
      await fn();
      setMode({ kind: 'idle' });
      onChanged();
    } catch (e) {
      setError((e as Error).message);
    }
  };
  const rename = (to: string) => {
    const n = to.trim();
    if (n === name) setMode({ kind: 'idle' });
    else if (isWorkflowName(n)) void act(() => session.renameSaved(name, n));
  };

  return (
    <li className="template saved" data-saved={name}>
      {mode.kind === 'renaming' ? (
        <form
          className="template-head"
          onSubmit={(e) => {
            e.preventDefault();
            rename(mode.to);
          }}
        >
          <input
            autoFocus
            aria-label="new name"
            value={mode.to}
            onChange={(e) => {
              setMode({ kind: 'renaming', to: e.target.value });
              setError(null);
            }}
          />
          <button type="submit" className="primary" disabled={!isWorkflowName(mode.to)}>
            Rename
          </button>
          <button type="button" onClick={() => (setMode({ kind: 'idle' }), setError(null))}>
            Cancel
          </button>
        </form>
      ) : (
        <div className="template-head">
          <strong>{name}</strong>
          <button className="primary" onClick={onOpen}>
            Open
          </button>
          <button onClick={() => setMode({ kind: 'renaming', to: name })}>Rename</button>
          <button onClick={() => setMode({ kind: 'deleting' })}>Delete</button>
        </div>
      )}
      {mode.kind === 'renaming' && !isWorkflowName(mode.to) && mode.to && (
        <p className="error">letters, digits, spaces and . ( ) - _ only</p>
      )}
      {mode.kind === 'deleting' && (
        <div className="row" data-testid="delete-confirm">
          <span className="error">Delete “{name}” from the server? This cannot be undone.</span>{' '}
          <button className="primary" onClick={() => void act(() => session.deleteSaved(name))}>
            Yes, delete
          </button>
          <button onClick={() => setMode({ kind: 'idle' })}>Cancel</button>
        </div>
      )}
      {error && (
        <p className="error" data-testid="saved-error">
          {error}
        </p>
      )}
    </li>
  );
}
