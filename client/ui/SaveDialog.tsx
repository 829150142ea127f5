// Asks for the name to save the workflow under on the server (Ctrl+S on a workflow not saved there yet).
import { useState } from 'react';
import type { Session } from './session.js';

export function SaveDialog({ session }: { session: Session }) {
  const initial = session.workflowName === 'Unsaved workflow' ? '' : session.workflowName;
  const [name, setName] = useState(initial);
  const valid = /^[\w .()-]{1,100}$/.test(name.trim()) && !name.trim().startsWith('.');
  return (
    <div className="modal-backdrop" onClick={() => session.cancelSave()}>
      <form
        className="modal"
        data-testid="save-dialog"
        onClick={(e) => e.stopPropagation()}
        onKeyDown={(e) => {
          if (e.key === 'Escape') {
            e.stopPropagation();
            session.cancelSave();
          }
        }}
        onSubmit={(e) => {
          e.preventDefault();
          if (valid) void session.save(name.trim());
        }}
      >
        <h3>Save workflow on the server</h3>
        <input
          autoFocus
          value={name}
          onChange={(e) => setName(e.target.value)}
          placeholder="name"
          aria-label="workflow name"
        />
        {!valid && name && <p className="error">letters, digits, spaces and . ( ) - _ only</p>}
        <div className="row">
          <button type="submit" className="primary" disabled={!valid}>
            Save
          </button>
          <button type="button" onClick={() => session.cancelSave()}>
            Cancel
          </button>
        </div>
      </form>
    </div>
  );
}
