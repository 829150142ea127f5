// Asks for the name to save the workflow under on the server (Ctrl+S on a workflow not saved there yet). A name
// another saved workflow has asks "Replace it?" first, so none is overwritten by a slip.
import { useState } from 'react';
import type { Session } from './session.js';

/** A name a workflow may be saved under: one file in workflows/, no path, no hidden file. */
export function isWorkflowName(name: string): boolean {
  return /^[\w .()-]{1,100}$/.test(name.trim()) && !name.trim().startsWith('.');
}

export function SaveDialog({ session }: { session: Session }) {
  const initial = session.workflowName === 'Unsaved workflow' ? '' : session.workflowName;
  const [name, setName] = useState(initial);
  const valid = isWorkflowName(name);
  /** A taken name the user was asked about: the next submit replaces that workflow. */
  const [asking, setAsking] = useState<string | null>(null);
  const asked = asking === name.trim();
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
        onSubmit={async (e) => {
          e.preventDefault();
          const n = name.trim();
          if (!valid) return;
          // read at submit time: another tab may have saved under this name since the dialog opened
          if (!asked && (await session.api.userWorkflows()).includes(n)) setAsking(n);
          else void session.save(n);
        }}
      >
        <h3>Save workflow on the server</h3>
        <input
          autoFocus
          value={name}
          onChange={(e) => {
            setName(e.target.value);
            setAsking(null); // an edited name is asked about afresh
          }}
          placeholder="name"
          aria-label="workflow name"
        />
        {!valid && name && <p className="error">letters, digits, spaces and . ( ) - _ only</p>}
        {asked && (
          <p className="error" data-testid="save-replaces">
            “{name.trim()}” is already saved on the server. Replace it?
          </p>
        )}
        <div className="row">
          <button type="submit" className="primary" disabled={!valid}>
            {asked ? 'Replace' : 'Save'}
          </button>
          <button type="button" onClick={() => session.cancelSave()}>
            Cancel
          </button>
        </div>
      </form>
    </div>
  );
}
