// The models page: every model, its card and held-out metrics (confusion matrix, per-class
// precision and recall, SNR sweep, training curves) and its versions, with activation.

import { get, post, showError } from './api.js';
import { classColour, confusionTable, lineChart } from './charts.js';
import { el, fmt, pct } from './dom.js';

export async function render(main, name) {
  const models = await get('/models');
  const list = el('ul', { class: 'tabs', id: 'model-list' }, models.map((m) =>
    el('li', {}, el('a', { href: `#/models/${encodeURIComponent(m.name)}`, 'aria-current': m.name === name ? 'page' : null },
      `${m.name} v${m.version}`))));
  const detail = el('section', { id: 'model-detail' });
  main.replaceChildren(el('h1', {}, 'Models'), list, detail);
  const chosen = name || (models[0] && models[0].name);
  if (chosen) await showModel(detail, chosen);
}

async function showModel(detail, name) {
  const [card, versions] = await Promise.all([
    get(`/models/${encodeURIComponent(name)}`),
    get(`/models/${encodeURIComponent(name)}/versions`),
  ]);
  const m = card.metrics || {};
  const test = m.test;
  const spec = card.spec;
  detail.replaceChildren(
    el('h2', {}, `${card.name}, version ${card.version} (in service)`),
    el('dl', { class: 'card', id: 'card' },
      el('dt', {}, 'Network'), el('dd', {}, `${spec.arch} ${spec.dim}, stages ${spec.stages.map((s) => `${s.units}x${s.channels}`).join(' / ')}${(spec.members ?? 1) > 1 ? `, an ensemble of ${spec.members}` : ''}, ${card.classes.length} classes`),
      el('dt', {}, 'Input'), el('dd', {}, `${card.window ? `${card.window.length} samples` : spec.input_size.join('x')}${card.sample_rate ? ` at ${card.sample_rate} Hz` : ''}, ${spec.in_channels} channel(s)`),
      el('dt', {}, 'Normalisation'), el('dd', {}, card.normalization),
      el('dt', {}, 'Classes'), el('dd', {}, card.classes.join(', ')),
      el('dt', {}, 'Held-out accuracy'), el('dd', { id: 'test-accuracy' }, test ? `${pct(test.accuracy)} of ${test.samples} windows` : 'not measured'),
      card.ood ? [el('dt', {}, 'Out of distribution'), el('dd', {}, `${card.ood.method}, threshold ${fmt(card.ood.threshold)} (${pct(card.ood.measured_false_alarm_rate)} false alarms)`)] : null,
      card.drift ? [el('dt', {}, 'Recent windows flagged'), el('dd', {}, `${pct(card.drift.flagged_share)} of ${card.drift.windows}`)] : null,
      card.machine && card.machine.bearing ? [el('dt', {}, 'Bearing'), el('dd', {}, card.machine.bearing)] : null),
    versionsTable(name, versions, detail));
  if (test && test.confusion) {
    const heat = el('div', { id: 'confusion', class: 'chart-box' });
    detail.append(el('h3', {}, 'Confusion matrix (held-out windows)'), heat, perClassTable(test.per_class));
    confusionTable(heat, card.classes, test.confusion);
  }
  if (m.snr_sweep && m.snr_sweep.rows) {
    const sweep = el('div', { class: 'chart', id: 'chart-sweep' });
    detail.append(el('h3', {}, 'Accuracy under added noise (SNR sweep)'), sweep);
    const colours = { gaussian: '#1f77b4', laplacian: '#ff7f0e', pink: '#e377c2' };
    lineChart(sweep, {
      x: m.snr_sweep.snr_db,
      xLabel: 'SNR, dB',
      yLabel: 'accuracy',
      scales: { y: { range: [0, 1] } },
      series: m.snr_sweep.rows.map((r) => ({ label: r.kind, values: r.accuracy, colour: colours[r.kind] || classColour([], r.kind), points: true })),
    });
  }
  if (m.history && m.history.length) {
    const curves = el('div', { class: 'chart', id: 'chart-history' });
    detail.append(el('h3', {}, 'Training curves'), curves);
    drawHistory(curves, m.history);
  }
}

export function drawHistory(container, history) {
  return lineChart(container, {
    x: history.map((h) => h.epoch),
    xLabel: 'epoch',
    yLabel: 'accuracy',
    scales: { y: { range: [0, 1] }, loss: {} },
    axes: [{ scale: 'loss', side: 1, label: 'loss', grid: { show: false } }],
    series: [
      { label: 'train accuracy', values: history.map((h) => h.train_accuracy), colour: '#1f77b4', points: true },
      { label: 'validation accuracy', values: history.map((h) => h.val_accuracy ?? null), colour: '#2ca02c', points: true },
      { label: 'loss', values: history.map((h) => h.loss), colour: '#d62728', scale: 'loss', points: true },
    ],
  });
}

function perClassTable(rows) {
  return el('table', { class: 'per-class', id: 'per-class' },
    el('thead', {}, el('tr', {}, el('th', {}, 'class'), el('th', {}, 'precision'), el('th', {}, 'recall'), el('th', {}, 'windows'))),
    el('tbody', {}, (rows || []).map((r) => el('tr', {},
      el('td', {}, r.class), el('td', {}, r.precision === null ? 'n/a' : pct(r.precision)),
      el('td', {}, r.recall === null ? 'n/a' : pct(r.recall)), el('td', {}, String(r.support))))));
}

function versionsTable(name, versions, detail) {
  const activate = async (version) => {
    showError(null);
    try {
      await post(`/models/${encodeURIComponent(name)}/activate`, { version }, { guarded: true });
      await showModel(detail, name);
    } catch (e) {
      showError(e);
    }
  };
  return el('table', { class: 'versions', id: 'versions' },
    el('caption', {}, 'Versions'),
    el('thead', {}, el('tr', {}, el('th', {}, 'version'), el('th', {}, 'origin'), el('th', {}, 'created'),
      el('th', {}, 'held-out accuracy'), el('th', {}, 'job'), el('th', {}, ''))),
    el('tbody', {}, versions.versions.map((v) => el('tr', { 'data-version': v.version, class: v.active ? 'active' : '' },
      el('td', {}, String(v.version)), el('td', {}, v.origin), el('td', {}, new Date(v.created_at).toLocaleString()),
      el('td', {}, v.metrics.test_accuracy === null || v.metrics.test_accuracy === undefined ? '-' : pct(v.metrics.test_accuracy)),
      el('td', {}, v.job_id ? el('a', { href: `#/jobs/${v.job_id}` }, v.job_id.slice(0, 8)) : '-'),
      el('td', {}, v.active ? el('strong', {}, 'in service')
        : el('button', { type: 'button', class: 'activate', onclick: () => activate(v.version) }, v.version < versions.active ? 'Roll back to this' : 'Activate'))))));
}
