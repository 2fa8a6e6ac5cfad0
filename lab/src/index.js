// mlops-nb's JupyterLab panel: the project's pipelines with a form each, a run's live progress, recent runs and a
// side-by-side comparison of two, and the models with promote and roll back. Everything it shows comes from the
// server extension mlops_nb.lab.server (under /mlops-nb/api/), through JupyterLab's own authenticated requests.
import { ILayoutRestorer } from '@jupyterlab/application';
import { ICommandPalette, MainAreaWidget } from '@jupyterlab/apputils';
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { IFrame, LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

const ICON = new LabIcon({
  name: 'mlops-nb:panel',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><path class="jp-icon3" fill="#616161" ' +
    'd="M4 4h7v7H4zM13 4h7v7h-7zM4 13h7v7H4zM13 16h7v2h-7zM15.5 13h2v7h-2z"/></svg>'
});
const POLL_MS = 1000; // how often a running job's progress is read

// A request to the panel's API; its JSON, or an Error carrying the server's one message.
async function api(path, init = {}) {
  const settings = ServerConnection.makeSettings();
  const response = await ServerConnection.makeRequest(URLExt.join(settings.baseUrl, 'mlops-nb/api', path), init, settings);
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (e) {
    data = null;
  }
  if (!response.ok) {
    throw new Error((data && data.message) || `${response.status} ${response.statusText}`);
  }
  return data;
}

const post = (path, body) => api(path, { method: 'POST', body: JSON.stringify(body) });

// A DOM element: tag with classes ("td.mlops-x"), attributes and properties, and children (elements or text).
function h(spec, attrs = {}, ...children) {
  const [tag, ...classes] = spec.split('.');
  const el = document.createElement(tag);
  if (classes.length) el.className = classes.join(' ');
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k in el && typeof v !== 'string') el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

// Replace `el`'s children by `children`, leaving out the empty ones (null, undefined, false).
const fill = (el, ...children) => el.replaceChildren(...children.flat().filter(c => c !== null && c !== undefined && c !== false));

const seconds = s => (s || s === 0 ? `${Number(s).toFixed(1)} s` : '');
const number = v =>
  typeof v !== 'number' ? (v ?? '') : Number.isInteger(v) ? String(v) : Math.abs(v) >= 1000 ? v.toFixed(0) : v.toPrecision(4);
const when = ms => (ms ? new Date(ms).toLocaleString() : '');

class Panel extends Widget {
  constructor(app) {
    super();
    this.app = app;
    this.id = 'mlops-nb-panel';
    this.title.icon = ICON;
    this.title.caption = 'mlops-nb: pipelines, runs and models';
    this.addClass('mlops-panel');
    this.views = {
      pipelines: h('div.mlops-view.mlops-pipelines'),
      runs: h('div.mlops-view.mlops-runs'),
      models: h('div.mlops-view.mlops-models')
    };
    this.tabs = Object.keys(this.views).map(name =>
      h('button.mlops-tab', { dataset: { view: name }, onclick: () => this.showView(name) }, name[0].toUpperCase() + name.slice(1))
    );
    this.node.append(h('div.mlops-tabs', {}, this.tabs), ...Object.values(this.views));
    this.picked = [];
    this.showView("pipelines");
  }

  showView(name) {
    this.tabs.forEach(t => t.classList.toggle('mlops-active', t.dataset.view === name));
    Object.entries(this.views).forEach(([k, v]) => (v.hidden = k !== name));
    ({ pipelines: () => this.loadPipelines(), runs: () => this.loadRuns(), models: () => this.loadModels() })[name]();
  }

  // MLflow's UI: the launcher tile's (the project's own store), or the team's tracking server
  mlflowUrl(page = '') {
    const base = this.project && !this.project.local ? this.project.tracking.replace(/\/?$/, '/') : URLExt.join(ServerConnection.makeSettings().baseUrl, 'mlflow/');
    return base + page;
  }

  // A link to MLflow's UI: the team's server, or the embedded store's UI proxied under JupyterLab (the `[lab]` extra)
  mlflowLink(page, text) {
    if (this.project && this.project.local && !this.project.mlflow_proxy) {
      return h('span.mlops-mlflow-missing', { title: 'MLflow\'s UI inside JupyterLab needs jupyter-server-proxy' },
        `${text.replace(' ↗', '')}: pip install 'mlops-nb[lab]', then restart JupyterLab`);
    }
    return h('a.mlops-mlflow-link', { href: this.mlflowUrl(page), target: '_blank', rel: 'noopener' }, text);
  }

  open(path) {
    return this.app.commands.execute('docmanager:open', { path, factory: 'Notebook' });
  }

  failure(where, error) {
    fill(where, h('div.mlops-error', {}, error.message));
  }

  // Pipelines: a form per spec, from its typed parameters; Run starts it in the background and shows its progress.
  async loadPipelines() {
    const view = this.views.pipelines;
    if (this.form) return; // the form keeps what was typed in it while other views are looked at
    try {
      this.project = await api('project');
    } catch (e) {
      return this.failure(view, e);
    }
    const specs = this.project.pipelines;
    const select = h('select.mlops-pipeline-select', { onchange: () => this.renderForm(specs[select.selectedIndex]) },
      specs.map(s => h('option', { value: s.path }, s.name)));
    this.form = h('div.mlops-form');
    this.progress = h('div.mlops-progress');
    fill(view,
      h('div.mlops-where', {}, `MLflow: ${this.project.tracking}`),
      specs.length ? select : h('div.mlops-empty', {}, 'No pipelines/*.yaml in this project.'),
      this.progress,
      this.form
    );
    const train = specs.findIndex(s => s.name === 'train');
    if (specs.length) {
      select.selectedIndex = Math.max(train, 0);
      this.renderForm(specs[select.selectedIndex]);
    }
    // a run started before this page was (re)loaded: follow it again
    const jobs = await api('jobs').catch(() => []);
    if (jobs.length && jobs[0].state === 'running') this.watch(jobs[0]);
  }

  renderForm(spec) {
    // a list's or a dict's default as JSON, which the field takes back as it is (so does YAML: [a, b], {depth: 3})
    const placeholder = p => p.default === null || p.default === undefined ? (p.type.endsWith('| None') || p.type === 'any' ? 'None' : '')
      : typeof p.default === 'object' ? JSON.stringify(p.default) : String(p.default);
    if (spec.error) {
      return fill(this.form, h('div.mlops-error', {}, spec.error));
    }
    const fields = spec.params.map(p => {
      const input = p.choices
        ? h('select', { name: p.name }, p.choices.map(c => h('option', { value: c, selected: c === p.default }, String(c))))
        : p.type === 'bool'
          ? h('select', { name: p.name }, ['true', 'false'].map(v => h('option', { value: v, selected: String(p.default) === v }, v)))
          : h('input', { name: p.name, type: 'text', placeholder: placeholder(p),
            inputmode: p.type === 'int' || p.type === 'float' ? 'decimal' : undefined });
      return h('label.mlops-field', { dataset: { param: p.name } },
        h('span.mlops-name', {}, p.name, h('span.mlops-type', {}, ` ${p.type}${p.required ? ', required' : ''}`)),
        input,
        p.help ? h('span.mlops-help', {}, p.help) : null);
    });
    this.message = h('div.mlops-message');
    fill(this.form,
      h('p.mlops-description', {}, spec.description || ''),
      h('div.mlops-steps-line', {}, spec.steps.join(' → ')),
      ...fields,
      h('div.mlops-runbar', {}, h('button.mlops-run.jp-mod-styled.jp-mod-accept', { onclick: () => this.run(spec) }, 'Run'), this.message),
      this.searchForm(spec)
    );
  }

  // A search (Optuna): a space for each parameter it may vary (the spec's search block fills them in), how many trials
  // and processes; the form's values above fix the others. Its trials then show live under the run's steps.
  searchForm(spec) {
    const block = spec.search || {};
    const spaces = block.space || {};
    const searchable = spec.params.filter(p => p.name in spaces || p.type === 'int' || p.type === 'float' || (p.choices && p.name === 'model'));
    if (!spec.search && !spec.params.some(p => p.name === 'model' || p.name === 'estimator')) return null;
    const setting = (name, value, help) => h('label.mlops-field', { dataset: { setting: name } },
      h('span.mlops-name', {}, name), h('input.mlops-setting-input', { type: 'text', value: String(value), dataset: { setting: name } }),
      h('span.mlops-help', {}, help));
    return h('details.mlops-search', { open: false },
      h('summary', {}, 'Search (Optuna)'),
      h('div.mlops-hint', {}, 'A space per parameter: int 2..12, float 0.01..0.3 log, choice rf,hgb; empty: not searched (its value above is used).'),
      searchable.map(p => h('label.mlops-field', { dataset: { space: p.name } },
        h('span.mlops-name', {}, p.name, h('span.mlops-type', {}, ` ${p.type}`)),
        h('input.mlops-space-input', { type: 'text', value: spaces[p.name] || '', dataset: { space: p.name }, placeholder: 'not searched' }))),
      setting('n_trials', block.n_trials || 20, 'trials in all'),
      setting('workers', 1, 'processes running trials at once'),
      h('div.mlops-runbar', {}, h('button.mlops-search-run.jp-mod-styled.jp-mod-accept', { onclick: () => this.run(spec, true) }, 'Search')));
  }

  // The form's values that differ from the defaults; with `search`, also the spaces and settings that differ from the spec's.
  values(spec, search) {
    const params = {};
    for (const el of this.form.querySelectorAll('.mlops-field [name]')) {
      const p = spec.params.find(q => q.name === el.name);
      const changed = el.tagName === 'SELECT' ? el.value !== String(p.default) : el.value.trim() !== '';
      if (changed) params[el.name] = el.value.trim();
    }
    if (!search) return { pipeline: spec.path, params };
    const block = spec.search || {};
    const tune = {};
    for (const el of this.form.querySelectorAll('.mlops-space-input')) {
      const was = (block.space || {})[el.dataset.space] || '';
      if (el.value.trim() !== was) tune[el.dataset.space] = el.value.trim();
    }
    const setting = name => this.form.querySelector(`.mlops-setting-input[data-setting="${name}"]`).value.trim();
    tune.n_trials = setting('n_trials');
    return { pipeline: spec.path, params, tune, workers: Number(setting('workers')) };
  }

  async run(spec, search = false) {
    fill(this.message);
    this.form.querySelectorAll('.mlops-invalid').forEach(f => f.classList.remove('mlops-invalid'));
    try {
      const job = await post('jobs', this.values(spec, search));
      this.watch(job);
      this.progress.scrollIntoView({ block: 'start' });
    } catch (e) {
      fill(this.message, h('div.mlops-error', {}, e.message));
      // the CLI's message names the parameter ("parameter 'n_rows' expects int"): mark its field
      // a search's ("search space 'max_depth': ..."): its space's field
      const named = /(search space|parameter) '([^']+)'/.exec(e.message);
      const field = named && this.form.querySelector(`.mlops-field[data-${named[1] === 'parameter' ? 'param' : 'space'}="${CSS.escape(named[2])}"]`);
      if (field) field.classList.add('mlops-invalid');
    }
  }

  // Live progress: each step's state and time, the failing cell and error, links that open executed notebooks.
  watch(job) {
    clearTimeout(this.timer);
    this.renderJob(job);
    if (job.state === 'running') {
      this.timer = setTimeout(async () => {
        try {
          this.watch(await api(`jobs/${job.job}`));
        } catch (e) {
          this.failure(this.progress, e);
        }
      }, POLL_MS);
    }
  }

  renderJob(job) {
    const notes = steps => steps.flatMap(s => [...(s.notes || []).map(n => `${s.step}: ${n}`),
      ...((s.why || []).length && s.why[0] !== 'no earlier run of this step' ? [`${s.step} ran: ${s.why.join('; ')}`] : [])]);
    const rows = job.steps.map(s =>
      h('tr.mlops-step', { dataset: { step: s.step, status: s.status } },
        h('td', {}, s.step),
        h('td.mlops-step-status', {}, s.status),
        h('td', {}, s.status === 'pending' ? '' : seconds(s.seconds)),
        h('td', {}, s.notebook ? h('a.mlops-open', { href: '#', onclick: ev => (ev.preventDefault(), this.open(s.notebook)) }, 'notebook') : '')));
    const failed = job.steps.find(s => s.error);
    fill(this.progress,
      h('div.mlops-job', { dataset: { state: job.state } },
        h('b', {}, `${job.pipeline}`), ` ${job.params.join(' ')} — `,
        h('span.mlops-job-state', {}, job.state), ` (${seconds(job.seconds)})`,
        job.run_id ? h('span.mlops-run-id', {}, ` run ${job.run_id.slice(0, 12)}`) : null,
        job.state === 'running' ? h('button.mlops-stop.jp-mod-styled', { onclick: () => api(`jobs/${job.job}`, { method: 'DELETE' }) }, 'Stop') : null),
      h('table.mlops-table', {}, h('tr', {}, h('th', {}, 'step'), h('th', {}, 'status'), h('th', {}, 'time'), h('th', {}, '')), rows),
      failed
        ? h('div.mlops-failure', {},
          h('div.mlops-error', {}, `${failed.step} failed in cell ${failed.error.cell}${failed.error.line ? `, line ${failed.error.line}` : ''}: ${failed.error.ename}: ${failed.error.evalue}`),
          h('pre.mlops-source', {}, failed.error.source || ''))
        : null,
      job.state === 'failed' && !failed ? h('pre.mlops-log', {}, job.log) : null,
      // what the steps said about the data (leakage, columns left out, free text) and why a step ran again
      notes(job.steps).length ? h('ul.mlops-notes', {}, notes(job.steps).map(n => h('li', {}, n))) : null,
      job.search ? this.renderTrials(job.search) : null,
      Object.keys(job.summary || {}).length
        ? h('div.mlops-summary', {}, Object.entries(job.summary).map(([k, v]) => `${k}=${number(v)}`).join(', '))
        : null
    );
  }

  // A search's trials as its processes finish them: values, state, the mean and spread of the fold scores; the best marked.
  renderTrials(search) {
    const trials = search.trials;
    const names = [...new Set(trials.flatMap(t => Object.keys(t.params)))];
    const count = state => trials.filter(t => t.state === state).length;
    const best = trials.find(t => t.number === search.best);
    return h('div.mlops-trials', { dataset: { study: search.study } },
      h('div.mlops-line', {},
        h('b', {}, `search ${search.run_id.slice(0, 8)}: `),
        h('span.mlops-trial-count', {}, `${trials.length} of ${search.n_trials} trials`),
        ` (${count('COMPLETE')} complete, ${count('PRUNED')} pruned, ${count('FAIL')} failed)`,
        best ? h('span.mlops-best-line', {}, ` — best: trial ${best.number}, ${search.metric} ${number(best.value)}`) : null),
      h('table.mlops-table.mlops-trial-table', {},
        h('tr', {}, ['#', ...names, 'state', search.metric || 'score', 'folds', 'time'].map(c => h('th', {}, c))),
        trials.map(t => h(`tr.mlops-trial${t.number === search.best ? '.mlops-best' : ''}`, { dataset: { trial: t.number, state: t.state } },
          h('td', {}, t.number),
          names.map(n => h('td', {}, number(t.params[n]))),
          h('td', { title: t.error || '' }, t.state.toLowerCase()),
          h('td', {}, t.value === null || t.value === undefined ? '' : `${number(t.value)} ± ${number(t.spread)}`),
          h('td', {}, t.folds),
          h('td', {}, seconds(t.seconds))))));
  }

  // Runs: the newest runs; pick two to compare their parameters and metrics; open a run to reach its notebooks.
  async loadRuns() {
    const view = this.views.runs;
    let runs;
    try {
      this.project = this.project || (await api('project'));
      runs = await api('runs?limit=30');
    } catch (e) {
      return this.failure(view, e);
    }
    this.picked = this.picked.filter(id => runs.some(r => r.run_id === id));
    this.compareButton = h('button.mlops-compare.jp-mod-styled', { onclick: () => this.compare(), disabled: this.picked.length < 2 }, 'Compare');
    this.detail = h('div.mlops-run-detail');
    // a run in two lines, to fit a sidebar: what it is and how it ended; then when, how long, its metric and version
    const rows = runs.map(r =>
      h('div.mlops-run-row', { dataset: { run: r.run_id, status: r.status } },
        h('div.mlops-line', {},
          h('input.mlops-pick', { type: 'checkbox', checked: this.picked.includes(r.run_id), onchange: ev => this.pick(r.run_id, ev.target.checked) }),
          h('a.mlops-run-link', { href: '#', title: 'its steps and notebooks', onclick: ev => (ev.preventDefault(), this.showRun(r.run_id)) }, r.run_id.slice(0, 8)),
          ` ${r.pipeline} `,
          h(`span.mlops-badge.mlops-status-${r.status.toLowerCase()}`, {}, r.status.toLowerCase()),
          r.registered ? h('span.mlops-version-tag', {}, ` → ${r.registered}`) : null,
          r.group ? h('a.mlops-group-link', { href: '#', dataset: { kind: r.group.kind, group: r.group.id }, onclick: ev => (ev.preventDefault(), this.compareGroup(r.group)) },
            r.group.kind === 'search' ? ' its search\'s trials' : ' its sweep') : null),
        h('div.mlops-line.mlops-dim', {},
          [when(r.started), seconds(r.seconds), r.metric && r.value !== null && r.value !== undefined ? `${r.metric} ${number(r.value)}` : '']
            .filter(Boolean).join(' · '))));
    fill(view,
      h('div.mlops-toolbar', {}, h('button.mlops-refresh.jp-mod-styled', { onclick: () => this.loadRuns() }, 'Refresh'), this.compareButton,
        this.mlflowLink('', 'MLflow ↗')),
      h('div.mlops-hint', {}, 'Pick two runs to compare them side by side, or more to see how the metric moves with what varies; a run\'s id opens its steps and notebooks.'),
      runs.length ? h('div.mlops-run-list', {}, rows) : h('div.mlops-empty', {}, 'No pipeline runs yet: run one from the Pipelines tab.'),
      this.detail
    );
  }

  pick(runId, on) {
    this.picked = on ? [...this.picked.filter(id => id !== runId), runId] : this.picked.filter(id => id !== runId);
    this.views.runs.querySelectorAll('.mlops-run-row').forEach(row => {
      row.querySelector('.mlops-pick').checked = this.picked.includes(row.dataset.run);
    });
    this.compareButton.disabled = this.picked.length < 2;
  }

  async showRun(runId) {
    try {
      const run = await api(`runs/${runId}`);
      fill(this.detail,
        h('h3', {}, `${run.pipeline} run ${run.run_id.slice(0, 12)}: ${run.status} `,
          this.mlflowLink(run.mlflow_page, 'in MLflow ↗')),
        h('table.mlops-table', {}, h('tr', {}, ['step', 'status', 'metrics', ''].map(c => h('th', {}, c))),
          run.steps.map(s => h('tr.mlops-run-step', { dataset: { step: s.step } },
            h('td', {}, s.step),
            h('td', {}, s.status + (s.cached ? ' (cached)' : '')),
            h('td', {}, Object.entries(s.metrics).map(([k, v]) => `${k}=${number(v)}`).join(', ')),
            h('td', {}, s.notebook ? h('a.mlops-open', { href: '#', onclick: ev => (ev.preventDefault(), this.open(s.notebook)) }, 'notebook') : '')))));
    } catch (e) {
      this.failure(this.detail, e);
    }
  }

  async compare() {
    const varies = h('div.mlops-many', {}, h('div.mlops-hint', {}, 'Reading the runs…'));
    if (this.picked.length > 2) {
      fill(this.detail, h('h3', {}, `${this.picked.length} runs: what varies, and the metric`), varies);
      return this.compareMany(this.picked, varies);
    }
    try {
      const [a, b] = await Promise.all(this.picked.map(id => api(`runs/${id}`)));
      const section = (title, x, y) => {
        const keys = [...new Set([...Object.keys(x), ...Object.keys(y)])].sort();
        return [h('tr', {}, h('th.mlops-section', { colspan: 3 }, title)),
          ...keys.map(k => h(`tr.mlops-compare-row${String(x[k]) !== String(y[k]) ? '.mlops-differs' : ''}`, { dataset: { key: k } },
            h('td', {}, k), h('td', {}, number(x[k])), h('td', {}, number(y[k]))))];
      };
      const notebooks = h('div.mlops-notebooks', {}, h('div.mlops-hint', {}, 'Comparing the steps\' executed notebooks…'));
      fill(this.detail,
        h('table.mlops-table.mlops-comparison', {},
          h('tr', {}, h('th', {}, ''), h('th', {}, `${a.run_id.slice(0, 8)} (${a.status})`), h('th', {}, `${b.run_id.slice(0, 8)} (${b.status})`)),
          section('parameters', a.params, b.params),
          section('metrics', a.metrics, b.metrics)),
        h('h3', {}, 'Notebooks'), notebooks,
        h('h3', {}, 'What varies, and the metric'), varies);
      await Promise.all([this.compareNotebooks(a.run_id, b.run_id, notebooks), this.compareMany(this.picked, varies)]);
    } catch (e) {
      this.failure(this.detail, e);
    }
  }

  // The two runs' steps, notebook by notebook (what `mlops-nb diff` says): changed ones marked, each opening nbdime's
  // side-by-side diff in JupyterLab; then the project files and packages that differ.
  async compareNotebooks(a, b, el) {
    let d;
    try {
      d = await api(`diffs/${a}/${b}`);
    } catch (e) {
      return this.failure(el, e);
    }
    const differ = (what, items) => items.length ? h('div.mlops-line', {}, `${what}: ${items.join(', ')}`) : null;
    fill(el,
      h('table.mlops-table', {}, h('tr', {}, ['step', 'its notebook', ''].map(c => h('th', {}, c))),
        d.steps.map(s => h(`tr.mlops-nb-step${s.status === 'changed' ? '.mlops-differs' : ''}`, { dataset: { step: s.step, status: s.status } },
          h('td', {}, s.step),
          h('td', {}, s.status === 'changed' && s.change ? `changed: ${s.change}` : s.status),
          h('td', {}, s.page ? h('a.mlops-open-diff', { href: '#', onclick: ev => (ev.preventDefault(), this.openDiff(d, s)) }, 'diff') : '')))),
      differ('project files that differ', d.code),
      differ('packages that differ', d.packages.map(([name, x, y]) => `${name} ${x} → ${y}`)));
  }

  // A sweep's runs or a search's trials (the group's id stands for all of them): what varies, and the metric.
  compareGroup(group) {
    const varies = h('div.mlops-many', {}, h('div.mlops-hint', {}, 'Reading the runs…'));
    const trials = group.kind === 'search';
    fill(this.detail, h('h3', {}, `${group.kind} ${group.id.slice(0, 8)}: ${trials ? 'its trials' : 'its runs'}, what varies, and the metric`), varies);
    return this.compareMany([group.id], varies, trials ? 'trials' : 'runs');
  }

  // Runs picked (any number): each parameter that varies and the primary metric, best first, and the figure of the
  // metric against each of them and in parallel coordinates (what `mlops-nb runs --compare --plot` draws).
  async compareMany(ids, el, noun = 'runs') {
    let c;
    try {
      c = await api(`compare?ids=${ids.join(',')}`);
    } catch (e) {
      return this.failure(el, e);
    }
    fill(el,
      h('div.mlops-hint', {}, `${c.rows.length} ${noun} by ${c.metric} (${c.goal === 'min' ? 'lower' : 'higher'} is better), best first`),
      h('table.mlops-table.mlops-many-table', {}, h('tr', {}, c.columns.map(k => h('th', {}, k === 'run_id' ? 'run' : k))),
        c.rows.map(r => h('tr.mlops-many-row', { dataset: { run: r[0] } }, r.map((v, i) => h('td', {}, i === 0 ? String(v).slice(0, 8) : number(v)))))),
      h('img.mlops-compare-plot', { src: c.plot, alt: `${c.metric} against each parameter that varies, and in parallel coordinates` }));
  }

  // nbdime's diff of one step's notebooks, in a JupyterLab tab; the page's scripts run sandboxed (no access to Jupyter).
  openDiff(d, step) {
    // a referrer for Jupyter's check that the page is asked for from its own origin (the IFrame sends none by default)
    const frame = new IFrame({ sandbox: ['allow-scripts'], referrerPolicy: 'same-origin' });
    frame.url = URLExt.join(ServerConnection.makeSettings().baseUrl, 'mlops-nb/api/diffs/pages', step.page);
    const widget = new MainAreaWidget({ content: frame });
    widget.id = `mlops-diff-${d.a}-${d.b}-${step.step}`;
    widget.title.label = `${step.step}: ${d.a.slice(0, 8)} vs ${d.b.slice(0, 8)}`;
    widget.title.closable = true;
    widget.addClass('mlops-diff-view');
    this.app.shell.add(widget, 'main');
    this.app.shell.activateById(widget.id);
  }

  // Models: versions, aliases and the gate's history; promote or roll back with a reason (recorded as the CLI does).
  async loadModels(name) {
    const view = this.views.models;
    let list, model;
    try {
      list = await api('models');
      name = name || this.modelName || list.default;
      if (!list.names.includes(name)) name = list.default;
      model = name ? await api(`models/${encodeURIComponent(name)}`) : null;
    } catch (e) {
      return this.failure(view, e);
    }
    this.modelName = name;
    if (!model) {
      return fill(view, h('div.mlops-empty', {}, 'No registered models yet: a train run registers one.'));
    }
    const select = h('select.mlops-model-select', { onchange: () => this.loadModels(select.value) },
      list.names.map(n => h('option', { value: n, selected: n === name }, n)));
    const version = h('select.mlops-promote-version', {}, model.versions.map(v => h('option', { value: v.version }, `version ${v.version}`)));
    const reason = h('input.mlops-reason', { type: 'text', placeholder: 'why (recorded in the history)' });
    this.moveMessage = h('div.mlops-message');
    const move = async (action) => {
      try {
        const e = await post(`models/${encodeURIComponent(name)}/${action}`, { version: version.value, reason: reason.value });
        await this.loadModels(name);
        fill(this.moveMessage, h('div.mlops-ok', {}, `${e.action}: champion is version ${e.version} (was ${e.previous || 'none'}), by ${e.by}`));
      } catch (err) {
        fill(this.moveMessage, h('div.mlops-error', {}, err.message));
      }
    };
    fill(view,
      h('div.mlops-toolbar', {}, select, h('button.mlops-refresh.jp-mod-styled', { onclick: () => this.loadModels(name) }, 'Refresh')),
      h('div.mlops-versions', {},
        model.versions.map(v => h('div.mlops-version', { dataset: { version: v.version, aliases: v.aliases.join(' ') } },
          h('div.mlops-line', {}, h('b', {}, `version ${v.version} `), v.aliases.map(a => h(`span.mlops-alias.mlops-alias-${a}`, {}, a)),
            v.gate ? h(`span.mlops-badge.mlops-gate-${v.gate}`, {}, `gate ${v.gate}`) : null),
          h('div.mlops-line.mlops-dim', {}, [v.metric, when(v.created), v.run_id ? `run ${v.run_id.slice(0, 8)}` : ''].filter(Boolean).join(' · '))))),
      h('div.mlops-move', {}, version, reason,
        h('button.mlops-promote.jp-mod-styled.jp-mod-accept', { onclick: () => move('promote') }, 'Promote'),
        h('button.mlops-rollback.jp-mod-styled.jp-mod-warn', { onclick: () => move('rollback') }, 'Roll back')),
      this.moveMessage,
      h('h3', {}, 'History'),
      model.history.length
        ? h('div.mlops-history', {}, model.history.map(e => h('div.mlops-event', { dataset: { action: e.action, version: e.version } },
          h('div.mlops-line', {}, h('b', {}, `${e.action} version ${e.version}`), e.previous ? ` (was ${e.previous})` : ''),
          h('div.mlops-line.mlops-dim', {}, `${e.time.replace('T', ' ').replace('Z', ' UTC')} · by ${e.by}`),
          h('div.mlops-line.mlops-reason-text', {}, e.reason))))
        : h('div.mlops-empty', {}, 'No promotions yet.')
    );
  }
}

const plugin = {
  id: 'mlops-nb-lab:panel',
  description: "mlops-nb's panel: run pipelines, watch them, compare runs, promote and roll back models.",
  autoStart: true,
  optional: [ILayoutRestorer, ICommandPalette],
  activate: (app, restorer, palette) => {
    const panel = new Panel(app);
    app.shell.add(panel, 'left', { rank: 300 });
    if (restorer) restorer.add(panel, panel.id);
    app.commands.addCommand('mlops-nb:open', {
      label: 'mlops-nb: Pipelines, Runs and Models',
      execute: () => app.shell.activateById(panel.id)
    });
    if (palette) palette.addItem({ command: 'mlops-nb:open', category: 'mlops-nb' });
  }
};

export default plugin;
