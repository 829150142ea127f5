// The template browser: the workflows saved on the server (open, rename, delete), then every workflow in
// workflows/ with its title and description, and for each the models it needs that the server lacks, with a Pull
// button (the server's `models pull`) where the catalog knows the file.
import { useEffect, useState } from 'react';
import type { CatalogModel, TemplateInfo } from '../api/http.js';
import { describeWorkflow, missingModels, type MissingModel } from '../graph/missing-models.js';
import type { Workflow } from '../graph/types.js';
import { defaultWorkflow } from '../graph/default-workflow.js';
import { SavedWorkflowRow } from './SavedWorkflowRow.js';
import type { Session } from './session.js';

interface Entry extends TemplateInfo {
  workflow: Workflow | null;
  missing: MissingModel[];
}

function MissingRow({
  m,
  catalog,
  onPull,
}: {
  m: MissingModel;
  catalog: CatalogModel[];
  onPull: (name: string) => Promise<void>;
}) {
  const [state, setState] = useState<'idle' | 'pulling' | string>('idle');
  const entry = catalog.find((c) => c.filename === m.file || c.name === m.file);
  const pull = async () => {
    setState('pulling');
    try {
      await onPull(entry!.name);
      setState('idle');
    } catch (e) {
      setState(`failed: ${(e as Error).message}`);
    }
  };
  return (
    <li className="missing-model" data-file={m.file}>
      <code>{m.file}</code>{' '}
      <span className="muted">
        ({m.input} of #{m.nodeId})
      </span>
      {entry ? (
        <>
          {' '}
          <button onClick={() => void pull()} disabled={state === 'pulling'}>
            {state === 'pulling' ? 'Pulling…' : 'Pull'}
          </button>
          <span className="muted">
            {' '}
            or run <code>tcd-studio models pull {entry.name}</code>
          </span>
        </>
      ) : (
        <span className="muted"> not in the catalog: put it in models/ yourself</span>
      )}
      {state.startsWith('failed') && <div className="error">{state}</div>}
    </li>
  );
}

export function TemplatesDialog({ session, onClose }: { session: Session; onClose: () => void }) {
  const { api, editor } = session;
  const [entries, setEntries] = useState<Entry[] | null>(null);
  const [catalog, setCatalog] = useState<CatalogModel[]>([]);
  const [version, setVersion] = useState(0);
  const [saved, setSaved] = useState<string[]>([]);
  const [savedVersion, setSavedVersion] = useState(0);
  useEffect(() => {
    void api.userWorkflows().then(setSaved);
  }, [api, savedVersion]);

  useEffect(() => {
    let live = true;
    (async () => {
      const [index, cat] = await Promise.all([api.templateIndex(), api.modelCatalog()]);
      const list = await Promise.all(
        index.map(async (t) => {
          const workflow = await api.workflow(t.file).catch(() => null);
          // The server's index falls back to a generic line when a workflow carries no Note: say what it does instead.
          const description =
            t.description && t.description !== 'tcd-studio workflow'
              ? t.description
              : workflow
                ? describeWorkflow(workflow)
                : '';
          return { ...t, description, workflow, missing: workflow ? missingModels(workflow, editor.objectInfo) : [] };
        }),
      );
      const builtIn = {
        file: 'default.json',
        title: 'Default: TCD text to image',
        description: 'The graph a fresh editor opens with, on the demo model.',
        workflow: defaultWorkflow(),
      };
      if (live) {
        setEntries([{ ...builtIn, missing: missingModels(builtIn.workflow, editor.objectInfo) }, ...list]);
        setCatalog(cat);
      }
    })().catch((e) => session.note('error', `templates: ${(e as Error).message}`));
    return () => {
      live = false;
    };
  }, [api, editor, session, version]);

  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.key === 'Escape') {
        e.stopPropagation();
        onClose();
      }
    };
    document.addEventListener('keydown', onKey, true);
    return () => document.removeEventListener('keydown', onKey, true);
  }, [onClose]);

  const pull = async (name: string) => {
    await api.pullModel(name);
    editor.refreshLists(await api.objectInfo()); // the new file is offered everywhere at once
    setVersion((v) => v + 1);
  };
  const open = (e: Entry) => {
    if (!e.workflow) return;
    editor.load(e.workflow, { keepHistory: true });
    session.setWorkflowName(e.file.replace(/\.json$/, ''));
    onClose();
  };

  return (
    <div className="modal-backdrop" onClick={onClose}>
      <div
        className="modal templates"
        data-testid="templates-dialog"
        role="dialog"
        aria-label="Templates"
        onClick={(e) => e.stopPropagation()}
      >
        <h3>
          Templates{' '}
          <button className="link" onClick={onClose} aria-label="close">
            ×
          </button>
        </h3>
        {saved.length > 0 && (
          <>
            <h4>Saved on the server</h4>
            <ul>
              {saved.map((n) => (
                <SavedWorkflowRow
                  key={n}
                  name={n}
                  session={session}
                  onOpen={() => {
                    void session.openSaved(n);
                    onClose();
                  }}
                  onChanged={() => setSavedVersion((v) => v + 1)}
                />
              ))}
            </ul>
            <h4>Templates</h4>
          </>
        )}
        {!entries && <div className="muted">loading…</div>}
        <ul>
          {entries?.map((e) => (
            <li key={e.file} className="template" data-template={e.file}>
              <div className="template-head">
                <strong>{e.title}</strong>
                <button className="primary" onClick={() => open(e)} disabled={!e.workflow}>
                  Open
                </button>
              </div>
              <div className="muted">{e.description}</div>
              {e.missing.length > 0 && (
                <div className="missing">
                  Missing models:
                  <ul>
                    {e.missing.map((m) => (
                      <MissingRow key={m.nodeId + m.input} m={m} catalog={catalog} onPull={pull} />
                    ))}
                  </ul>
                </div>
              )}
              {e.workflow && !e.missing.length && <div className="ready">all models installed</div>}
            </li>
          ))}
        </ul>
      </div>
    </div>
  );
}
