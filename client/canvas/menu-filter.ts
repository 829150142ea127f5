// A filter box on the long value lists of combo widgets (samplers, checkpoints, LoRAs), as ComfyUI's frontend adds
// one: typing hides the entries that do not contain the text, Enter picks the first one shown, Escape closes.
// litegraph opens combo lists (and only those) as menus of class "dark"; node and canvas menus are left alone.
import { LiteGraph } from '@comfyorg/litegraph';

/** Menus with more entries than this get the box. */
const LONG = 10;

function addFilter(menu: HTMLElement): void {
  const entries = [...menu.querySelectorAll<HTMLElement>('.litemenu-entry')].filter((e) => e.textContent?.trim());
  if (entries.length <= LONG || menu.querySelector('.menu-filter')) return;
  const input = document.createElement('input');
  input.className = 'menu-filter';
  input.placeholder = 'filter';
  input.setAttribute('aria-label', 'filter the list');
  const shown = () => entries.filter((e) => e.style.display !== 'none');
  input.addEventListener('input', () => {
    const q = input.value.trim().toLowerCase();
    for (const e of entries) e.style.display = !q || e.textContent!.toLowerCase().includes(q) ? '' : 'none';
  });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') shown()[0]?.click();
    else if (e.key === 'Escape') LiteGraph.closeAllContextMenus(window);
    else return;
    e.preventDefault();
  });
  const title = menu.querySelector('.litemenu-title');
  if (title) title.after(input);
  else menu.prepend(input);
  input.focus();
}

/** Watches the page for litegraph menus and gives long combo lists a filter box. */
export function installMenuFilter(): void {
  new MutationObserver((records) => {
    for (const r of records)
      for (const n of r.addedNodes)
        if (n instanceof HTMLElement && n.classList.contains('litecontextmenu') && n.classList.contains('dark'))
          addFilter(n);
  }).observe(document.body, { childList: true });
}
