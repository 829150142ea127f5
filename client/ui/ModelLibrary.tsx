// The model library: files per model folder. Drag one onto the canvas (or press Enter on it) to add its loader
// node; Refresh (or R on the canvas) re-reads the folders and every combo's list.
import { useState } from 'react';
import type { Session } from './session.js';

export const MODEL_MIME = 'application/x-tcd-model';
/** Always shown; other folders appear once they hold a file. */
const ALWAYS = ['checkpoints', 'loras'];

export function ModelLibrary({ session }: { session: Session }) {
  const [filter, setFilter] = useState('');
  const folders = Object.entries(session.models).filter(([f, files]) => ALWAYS.includes(f) || files.length);
  const q = filter.trim().toLowerCase();
  return (
    <section className="panel models" data-testid="model-library">
      <h4>
        Models{' '}
        <button className="link" onClick={() => void session.refreshModels()} title="R">
          Refresh
        </button>
      </h4>
      <input
        className="filter"
        placeholder="filter models"
        value={filter}
        onChange={(e) => setFilter(e.target.value)}
        aria-label="filter models"
      />
      {folders.map(([folder, files]) => (
        <details key={folder} open data-folder={folder}>
          <summary>
            {folder} <span className="muted">({files.length})</span>
          </summary>
          <ul>
            {files
              .filter((f) => !q || f.toLowerCase().includes(q))
              .map((file) => (
                <li
                  key={file}
                  className="model-file"
                  draggable
                  tabIndex={0}
                  data-file={file}
                  title="drag onto the canvas, or Enter"
                  onDragStart={(e) => {
                    e.dataTransfer.setData(MODEL_MIME, JSON.stringify({ folder, file }));
                    e.dataTransfer.effectAllowed = 'copy';
                  }}
                  onKeyDown={(e) => {
                    if (e.key === 'Enter') {
                      e.preventDefault();
                      session.editor.addModelLoader(folder, file);
                    }
                  }}
                >
                  {file}
                </li>
              ))}
            {files.length === 0 && <li className="muted">empty: put files in models/{folder}/</li>}
          </ul>
        </details>
      ))}
    </section>
  );
}
