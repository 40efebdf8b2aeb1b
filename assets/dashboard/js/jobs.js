// The jobs page: start a training job from a form, list jobs with a status filter, and
// watch one live (progress, ETA, loss and accuracy curves over server-sent events).

import { get, post, showError } from './api.js';
import { el, duration, pct } from './dom.js';
import { drawHistory } from './models.js';

const STATUSES = ['', 'queued', 'running', 'succeeded', 'failed', 'cancelled'];
let following = null;

export function leave() {
  if (following) following.close();
  following = null;
}

export async function render(main, id, params) {
  leave();
  if (id) return showJob(main, id);
  const status = params.get('status') || '';
  const filter = el('select', { id: 'status-filter' }, STATUSES.map((s) => el('option', { value: s, selected: s === status }, s || 'any status')));
  filter.addEventListener('change', () => { location.hash = filter.value ? `#/jobs?status=${filter.value}` : '#/jobs'; });
  const query = new URLSearchParams({ limit: '100' });
  if (status) query.set('status', status);
  const [list, datasets] = await Promise.all([get(`/jobs?${query}`), get('/datasets')]);
  main.replaceChildren(
    el('h1', {}, 'Jobs'),
    jobForm(datasets),
    el('h2', {}, 'All jobs'),
    el('label', {}, 'Status ', filter),
    el('table', { id: 'jobs', class: 'jobs' },
      el('caption', {}, `${list.total} job(s)`),
      el('thead', {}, el('tr', {}, ['job', 'model', 'status', 'progress', 'created', 'version'].map((h) => el('th', {}, h)))),
      el('tbody', {}, list.jobs.map((j) => el('tr', { 'data-job': j.id, class: j.status },
        el('td', {}, el('a', { href: `#/jobs/${j.id}` }, j.id.slice(0, 8))),
        el('td', {}, j.model), el('td', {}, j.status),
        el('td', {}, j.progress ? `epoch ${j.progress.epoch}/${j.progress.epochs}` : '-'),
        el('td', {}, new Date(j.created_at).toLocaleString()),
        el('td', {}, j.model_version ? `v${j.model_version}` : '-'))))));
}

function jobForm(datasets) {
  const field = (label, input) => el('label', {}, `${label} `, input);
  const datasetList = el('datalist', { id: 'dataset-names' }, datasets.map((d) => el('option', { value: d.path })));
  const form = el('form', { id: 'job-form', class: 'controls wrap' },
    field('Model name', el('input', { name: 'model', required: true, value: 'cwru-bearing', pattern: '[a-z0-9._\\-]+' })),
    field('Dataset', el('input', { name: 'dataset', required: true, list: 'dataset-names', value: 'cwru/manifest.csv', size: 24 })),
    datasetList,
    field('Filter', el('input', { name: 'filter', placeholder: 'load_hp=0,1', size: 12 })),
    field('Rate, Hz', el('input', { name: 'sample_rate', type: 'number', min: 1, value: 12000 })),
    field('Preset', el('select', { name: 'preset' }, ['paper-1d', 'seed-2d', 'mnist-2d'].map((p) => el('option', { value: p }, p)))),
    field('Network', el('select', { name: 'arch' }, ['drsn-cw', 'drsn-cs', 'resnet'].map((p) => el('option', { value: p }, p)))),
    field('Epochs', el('input', { name: 'epochs', type: 'number', min: 1, value: 10 })),
    field('Batch', el('input', { name: 'batch_size', type: 'number', min: 1, value: 64 })),
    field('Most windows per class', el('input', { name: 'max_per_class', type: 'number', min: 1, placeholder: 'all' })),
    field('Noise augmentation', el('select', { name: 'augment' },
      el('option', { value: '' }, 'none'), el('option', { value: 'gaussian' }, 'gaussian'),
      el('option', { value: 'gaussian,laplacian,pink' }, 'gaussian, laplacian, pink'))),
    field('SNR, dB', el('input', { name: 'snr', value: '-8:2', size: 6 })),
    field('Start from', el('select', { name: 'init' }, el('option', { value: 'scratch' }, 'scratch'), el('option', { value: 'active' }, 'the version in service'))),
    field('Promote', el('select', { name: 'promote' }, ['if_better', 'always', 'never'].map((p) => el('option', { value: p }, p.replace('_', ' '))))),
    el('button', { type: 'submit', id: 'start-job' }, 'Start job'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    showError(null);
    try {
      const job = await post('/jobs', jobRequest(new FormData(form)), { guarded: true });
      location.hash = `#/jobs/${job.id}`;
    } catch (err) {
      showError(err);
    }
  });
  return el('details', { open: true }, el('summary', {}, 'Start a training job'), form);
}

/// The form as a `POST /jobs` body.
function jobRequest(form) {
  const number = (name) => (form.get(name) ? Number(form.get(name)) : undefined);
  const init = form.get('init');
  const data = { sample_rate: number('sample_rate'), max_per_class: number('max_per_class') };
  const filter = (form.get('filter') || '').trim();
  if (filter) {
    const [column, values] = filter.split('=');
    data.filter = { [column.trim()]: (values || '').split(',').map((v) => v.trim()).filter(Boolean) };
  }
  const body = {
    model: form.get('model').trim(),
    dataset: form.get('dataset').trim(),
    data,
    train: { epochs: number('epochs'), batch_size: number('batch_size') },
    init,
    promote: form.get('promote'),
  };
  // A job starting from the version in service keeps its network.
  if (init === 'scratch') Object.assign(body, { preset: form.get('preset'), arch: form.get('arch') });
  if (form.get('augment')) {
    const [low, high] = String(form.get('snr')).split(':').map(Number);
    body.augment = { kinds: form.get('augment').split(','), snr_db: [low, Number.isFinite(high) ? high : low], probability: 0.8 };
  }
  return body;
}

async function showJob(main, id) {
  const job = await get(`/jobs/${encodeURIComponent(id)}`);
  const history = (job.metrics || []).map((r) => ({ ...r }));
  const status = el('span', { id: 'job-status', class: job.status }, job.status);
  const progress = el('progress', { id: 'job-progress', max: 1, value: 0 });
  const progressText = el('span', { id: 'job-progress-text' }, '');
  const curves = el('div', { class: 'chart', id: 'chart-job' });
  const cancel = el('button', { type: 'button', id: 'cancel-job', disabled: isFinal(job.status) }, 'Cancel');
  const outcome = el('p', { id: 'job-outcome' });
  cancel.addEventListener('click', async () => {
    showError(null);
    try {
      await post(`/jobs/${encodeURIComponent(id)}/cancel`, undefined, { guarded: true });
    } catch (e) {
      showError(e);
    }
  });
  const setOutcome = (j) => {
    outcome.textContent = j.error ? `Failed: ${j.error}` : (j.model_version ? `Made version ${j.model_version} of ${job.model}.` : '');
    if (j.model_version) outcome.append(' ', el('a', { href: `#/models/${encodeURIComponent(job.model)}` }, 'See the model'));
  };
  const setProgress = (p) => {
    const done = (p.epoch - 1 + (p.step || p.steps_per_epoch || 1) / (p.steps_per_epoch || 1)) / p.epochs;
    progress.value = Math.min(1, Math.max(0, done));
    progressText.textContent = ` epoch ${p.epoch} of ${p.epochs}, ${pct(progress.value)}, ETA ${duration(p.eta_s ?? p.eta_seconds)}`;
  };
  main.replaceChildren(
    el('h1', {}, `Job ${id.slice(0, 8)}`),
    el('p', {}, `Model ${job.model}: `, status, ' ', cancel),
    el('p', {}, progress, progressText),
    outcome,
    el('h2', {}, 'Loss and accuracy per epoch'),
    curves,
    el('details', {}, el('summary', {}, 'Request'), el('pre', {}, JSON.stringify(job.request, null, 2))));
  if (job.progress) setProgress({ ...job.progress, steps_per_epoch: job.progress.steps });
  if (isFinal(job.status)) progress.value = job.status === 'succeeded' ? 1 : progress.value;
  setOutcome(job);
  const redraw = () => { if (history.length) drawHistory(curves, history); else curves.dataset.points = '0'; };
  const add = (m) => {
    if (!history.some((h) => h.epoch === m.epoch)) history.push(m);
    history.sort((a, b) => a.epoch - b.epoch);
  };
  // Epochs that ended between the first read and the stream's start (or while it
  // reconnected) are read back from the job itself.
  const catchUp = async () => {
    const now = await get(`/jobs/${encodeURIComponent(id)}`);
    (now.metrics || []).forEach(add);
    redraw();
  };
  redraw();
  // A page the user has left meanwhile follows nothing.
  if (isFinal(job.status) || !main.isConnected) return;
  following = new EventSource(`/jobs/${encodeURIComponent(id)}/events`);
  following.addEventListener('open', () => catchUp().catch(showError));
  following.addEventListener('step', (e) => setProgress(JSON.parse(e.data)));
  following.addEventListener('epoch', (e) => {
    const m = JSON.parse(e.data);
    add(m);
    setProgress({ ...m, step: 1, steps_per_epoch: 1 });
    redraw();
  });
  following.addEventListener('status', (e) => {
    const s = JSON.parse(e.data);
    status.textContent = s.status;
    status.className = s.status;
    if (isFinal(s.status)) {
      cancel.disabled = true;
      if (s.status === 'succeeded') progress.value = 1;
      setOutcome(s);
      leave();
      catchUp().catch(showError);
    }
  });
  following.onerror = () => {
    // The stream ends after the final status; a broken one is picked up on the next visit.
    if (following && following.readyState === EventSource.CLOSED) leave();
  };
}

function isFinal(status) {
  return ['succeeded', 'failed', 'cancelled'].includes(status);
}
