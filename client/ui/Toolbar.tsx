// Top bar: queue (batch count, front), interrupt, undo/redo, the workflow's name and files (open, export as workflow
// or API prompt), templates, the side panel toggle and the connection indicator.
import { useEffect, useRef, useState } from 'react';
import type { Session } from './session.js';
import { TemplatesDialog } from './TemplatesDialog.js';
import { workflowToPrompt } from '../graph/to-api.js';

function download(name: string, text: string): void {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([text], { type: 'application/json' }));
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

export function Toolbar({ session }: { session: Session }) {
  const { editor } = session;
  const fileRef = useRef<HTMLInputElement>(null);
  const exportRef = useRef<HTMLSpanElement>(null);
  const [exportOpen, setExportOpen] = useState(false);
  // The export menu closes on a click anywhere else, as menus do.
  useEffect(() => {
    if (!exportOpen) return;
    const close = (e: PointerEvent) => {
      if (!exportRef.current?.contains(e.target as Node)) setExportOpen(false);
    };
    document.addEventListener('pointerdown', close, true);
    return () => document.removeEventListener('pointerdown', close, true);
  }, [exportOpen]);
  const [showTemplates, setShowTemplates] = useState(false);

  return (
    <header className="toolbar">
      <strong className="brand">tcd-studio</strong>
      <button className="primary" data-testid="queue-button" onClick={() => void session.queue()} title="Ctrl+Enter">
        Queue
      </button>
      <input
        type="number"
        min={1}
        max={100}
        value={session.batchCount}
        className="batch"
        data-testid="batch-count"
        aria-label="batch count"
        title="batch count"
        onChange={(e) => session.setBatchCount(Number(e.target.value))}
      />
      <button onClick={() => void session.queue({ front: true })} data-testid="queue-front" title="Ctrl+Shift+Enter">
        Queue (front)
      </button>
      <button onClick={() => void session.interrupt()} data-testid="interrupt-button">
        Interrupt
      </button>
      <span className="sep" />
      <button onClick={() => editor.undo()} disabled={!editor.history.canUndo} title="Ctrl+Z">
        Undo
      </button>
      <button onClick={() => editor.redo()} disabled={!editor.history.canRedo} title="Ctrl+Y">
        Redo
      </button>
      <span className="sep" />
      <span
        className="wf-name"
        data-testid="workflow-name"
        title={`${session.workflowName}: ${editor.modified ? 'modified since saved' : 'saved'}`}
      >
        {/* the name alone is cut short when the bar is narrow; the marker after it stays in view */}
        <span className="wf-title">{session.workflowName}</span>
        {editor.modified && (
          <span className="unsaved" data-testid="unsaved" aria-label="modified">
            {' '}
            ●
          </span>
        )}
      </span>
      <button onClick={() => void session.save()} title="Ctrl+S: save on the server" data-testid="save-button">
        Save
      </button>
      <button onClick={() => fileRef.current?.click()}>Open file</button>
      <input
        ref={fileRef}
        type="file"
        accept=".json,.png,application/json,image/png"
        hidden
        data-testid="file-input"
        onChange={async (e) => {
          const f = e.target.files?.[0];
          if (f) {
            const err = await editor.loadFile(f);
            if (err) session.note('error', err);
          }
          e.target.value = '';
        }}
      />
      <span className="menu" data-testid="export-menu" ref={exportRef}>
        <button aria-haspopup="menu" aria-expanded={exportOpen} onClick={() => setExportOpen((o) => !o)}>
          Export ▾
        </button>
        {exportOpen && (
          <div className="menu-items" role="menu">
            <button
              onClick={() => {
                setExportOpen(false);
                download(`${session.workflowName}.json`, JSON.stringify(editor.serialize(), null, 2));
              }}
            >
              Workflow
            </button>
            <button
              title="the prompt POST /prompt takes (ComfyUI's Export (API))"
              onClick={() => {
                setExportOpen(false);
                const prompt = workflowToPrompt(editor.serialize(), editor.objectInfo);
                download(`${session.workflowName}_api.json`, JSON.stringify(prompt, null, 2));
              }}
            >
              API format
            </button>
          </div>
        )}
      </span>
      <button onClick={() => setShowTemplates(true)} data-testid="templates">
        Templates…
      </button>
      {showTemplates && <TemplatesDialog session={session} onClose={() => setShowTemplates(false)} />}
      <span className="grow" />
      <span className="muted">queue: {session.queueRemaining}</span>
      <span className={`conn ${session.connection}`} data-testid="connection" title="server connection">
        {session.connection === 'open'
          ? '● connected'
          : session.connection === 'connecting'
            ? '○ connecting'
            : '◌ server unreachable, retrying…'}
      </span>
      <button
        onClick={() => session.toggleSidePanel()}
        aria-pressed={session.sidePanel}
        data-testid="panel-toggle"
        title="show or hide the side panel"
      >
        {session.sidePanel ? 'Hide panel ▸' : '◂ Show panel'}
      </button>
    </header>
  );
}
