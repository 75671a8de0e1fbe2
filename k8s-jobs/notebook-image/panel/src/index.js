// modlib's JupyterLab extension: jupyter-lmod 5.3's panel lists module names only, one line each, cut off
// at the panel's width, with a Load button shown on hover. This decorates its rows as jupyter-lmod draws
// them (it redraws both lists after every load, unload and filter key): each row gets the module's
// description (a second line and the tooltip), a GPU mark, and keyboard access (Tab to the list, arrows
// between rows, Enter or Space presses the row's Load or Unload button); the featured modules, which the
// image's hook lists first, get a heading. What each module is comes from the live view's modules.json
// and featured.json (publish writes them beside the catalogue page), read through the catalogue's
// jupyter-server-proxy entry. jupyter-lmod itself is left as it is: its API, its loads, its DOM.

const PANEL = 'module-jupyterlab';
const LISTS = ['module_loaded_list', 'module_avail_list'];

async function libraryData(settings) {
  // the catalogue's proxy entry serves the target's folder of the live view
  const get = async path => {
    const headers = settings.token ? { Authorization: `token ${settings.token}` } : {};
    const response = await fetch(settings.baseUrl + path, { credentials: 'same-origin', headers });
    if (!response.ok) {
      throw new Error(`${path}: ${response.status}`);
    }
    return response.json();
  };
  const info = await get('server-proxy/servers-info');
  const catalogue = info.server_processes.find(server => server.name === 'catalogue');
  if (!catalogue) {
    return { modules: {}, featured: new Set() };
  }
  const folder = catalogue.launcher_entry.path_info.replace(/[^/]*$/, '');
  const [modules, featured] = await Promise.all([get(folder + 'modules.json'), get(folder + 'featured.json')]);
  return { modules: modules.modules, featured: new Set(featured.modules.map(m => m.module)) };
}

function label(row) {
  return row.querySelector('.jp-Module-itemLabel').textContent;
}

function decorateRow(row, data) {
  const name = label(row);
  const about = data.modules[name] || {};
  row.dataset.modlib = name;
  row.tabIndex = 0;
  row.title = about.description ? `${name}\n\n${about.description}` : name;
  row.setAttribute('aria-label', `${name}${about.gpu ? ', GPU' : ''}${about.description ? ': ' + about.description : ''}`);
  // not a span nor a button: jupyter-lmod's click handler reads the row's first span as the module name
  const button = row.querySelector('.jp-Module-itemButton');
  if (about.gpu) {
    const mark = document.createElement('i');
    mark.className = 'modlib-gpu';
    mark.textContent = 'GPU';
    mark.title = 'a GPU module (Lmod property gpu): it needs a GPU node';
    row.insertBefore(mark, button);
  }
  if (about.description) {
    const line = document.createElement('div');
    line.className = 'modlib-desc';
    line.textContent = about.description;
    row.append(line);
  }
}

function heading(text) {
  const item = document.createElement('li');
  item.className = 'modlib-group';
  item.setAttribute('role', 'presentation');
  item.textContent = text;
  return item;
}

function group(list, data) {
  list.querySelectorAll('.modlib-group').forEach(item => item.remove());
  const rows = [...list.querySelectorAll('.jp-Module-item')];
  const first = rows.findIndex(row => data.featured.has(label(row)));
  if (first < 0) {
    return;
  }
  list.insertBefore(heading('Featured'), rows[first]);
  const rest = rows.find((row, i) => i > first && !data.featured.has(label(row)));
  if (rest) {
    list.insertBefore(heading('All modules'), rest);
  }
}

function watch(panel, data) {
  let focusing = null; // the module whose row had focus when its button was pressed: focused again once redrawn
  const lists = LISTS.map(id => panel.querySelector('#' + id));
  const decorate = () => {
    observer.disconnect();
    for (const list of lists) {
      list.querySelectorAll('.jp-Module-item:not([data-modlib])').forEach(row => decorateRow(row, data));
    }
    group(lists[1], data);
    const again = focusing && panel.querySelector(`.jp-Module-item[data-modlib="${CSS.escape(focusing)}"]`);
    const busy = again && /ing\.\.\.$/.test(again.querySelector('.jp-Module-itemButton').textContent);
    if (again && !busy) {
      again.focus();
      focusing = null;
    }
    lists.forEach(list => observer.observe(list, { childList: true, subtree: true }));
  };
  const observer = new MutationObserver(decorate);
  decorate();
  panel.addEventListener('keydown', event => {
    const row = event.target.closest && event.target.closest('.jp-Module-item');
    if (!row || event.target !== row) {
      return;
    }
    if (event.key === 'Enter' || event.key === ' ') {
      event.preventDefault();
      focusing = row.dataset.modlib;
      row.querySelector('.jp-Module-itemButton').click();
    } else if (event.key === 'ArrowDown' || event.key === 'ArrowUp') {
      event.preventDefault();
      const rows = [...panel.querySelectorAll('.jp-Module-item')];
      const next = rows[rows.indexOf(row) + (event.key === 'ArrowDown' ? 1 : -1)];
      if (next) {
        next.focus();
      }
    }
  });
}

function whenPanel(callback) {
  const panel = document.getElementById(PANEL);
  if (panel) {
    callback(panel);
    return;
  }
  const observer = new MutationObserver(() => {
    const found = document.getElementById(PANEL);
    if (found) {
      observer.disconnect();
      callback(found);
    }
  });
  observer.observe(document.body, { childList: true, subtree: true });
}

const plugin = {
  id: '@modlib/jupyterlab-panel:plugin',
  description: 'GPU marks, descriptions, the featured group and keyboard access in jupyter-lmod\'s panel',
  autoStart: true,
  activate: async app => {
    let data = { modules: {}, featured: new Set() };
    try {
      data = await libraryData(app.serviceManager.serverSettings);
    } catch (error) {
      console.warn('modlib panel: no library data, rows get keyboard access only', error);
    }
    whenPanel(panel => watch(panel, data));
  }
};

export default plugin;
