// Top bar: queue, interrupt, undo/redo, files, templates and the connection indicator.
import { useRef, useState } from 'react';
import type { Session } from './session.js';
import { TemplatesDialog } from './TemplatesDialog.js';

function download(name: string, text: string): void {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([text], { type: 'application/json' }));
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

export function Toolbar({ session }: { session: Session }) {
  const { editor, api } = session;
  const fileRef = useRef<HTMLInputElement>(null);
  const [showTemplates, setShowTemplates] = useState(false);

  return (
    <header className="toolbar">
      <strong className="brand">tcd-studio</strong>
      <button className="primary" data-testid="queue-button" onClick={() => void session.queue()} title="Ctrl+Enter">Queue</button>
      <button onClick={() => void session.interrupt()} data-testid="interrupt-button">Interrupt</button>
      <span className="sep" />
      <button onClick={() => editor.undo()} disabled={!editor.history.canUndo} title="Ctrl+Z">Undo</button>
      <button onClick={() => editor.redo()} disabled={!editor.history.canRedo} title="Ctrl+Y">Redo</button>
      <span className="sep" />
      <button onClick={() => fileRef.current?.click()}>Open</button>
      <input ref={fileRef} type="file" accept=".json,.png,application/json,image/png" hidden data-testid="file-input"
        onChange={async (e) => {
          const f = e.target.files?.[0];
          if (f) { const err = await editor.loadFile(f); if (err) session.note('error', err); }
          e.target.value = '';
        }} />
      <button onClick={() => download('workflow.json', JSON.stringify(editor.serialize(), null, 2))}>Save</button>
      <button onClick={() => setShowTemplates(true)} data-testid="templates">Templates…</button>
      {showTemplates && <TemplatesDialog session={session} onClose={() => setShowTemplates(false)} />}
      <span className="grow" />
      <span className="muted">queue: {session.queueRemaining}</span>
      <span className={`conn ${session.connection}`} data-testid="connection" title="server connection">
        {session.connection === 'open' ? '● connected' : session.connection === 'connecting' ? '○ connecting' : '◌ reconnecting…'}
      </span>
    </header>
  );
}
