// The diagnose page: send a recording (or images) to POST /diagnose and draw the answer:
// the signal coloured by each window's verdict, the probabilities over time, one window's
// per-block thresholds (the DRSN explanation) and the envelope spectrum with the bearing's
// defect frequencies.

import { get, post, showError } from './api.js';
import { classColour, lineChart, markLines, spanFill, withAlpha } from './charts.js';
import { el, fmt, pct } from './dom.js';

export async function render(main) {
  const [models, examples] = await Promise.all([get('/models'), get('/examples')]);
  const modelSelect = el('select', { id: 'model', name: 'model' },
    models.map((m) => el('option', { value: m.name }, `${m.name} (v${m.version}, ${m.dim}, ${m.classes.length} classes)`)));
  const fileInput = el('input', { type: 'file', id: 'file', multiple: true,
    accept: '.wav,.csv,.tsv,.txt,.npy,.mat,.f32,.raw,.bin,.png,.jpg,.jpeg' });
  const rate = el('input', { type: 'number', id: 'rate', min: 1, placeholder: "the model's" });
  const stride = el('input', { type: 'number', id: 'stride', min: 1, placeholder: 'one window' });
  const channel = el('input', { type: 'number', id: 'channel', min: 0, placeholder: 'all' });
  const exampleSelect = el('select', { id: 'example' },
    examples.map((e) => el('option', { value: e.url }, `${e.name} (${Math.round(e.bytes / 1024)} kB)`)));
  const result = el('section', { id: 'result', 'aria-live': 'polite' });
  const drop = el('div', { id: 'drop', tabindex: 0, role: 'button' },
    'Drop a recording (WAV, CSV, .npy, .mat, raw f32) or images here, or press Enter to pick one');

  const send = async (files, label) => {
    showError(null);
    result.replaceChildren(el('p', { class: 'muted' }, `Diagnosing ${label}...`));
    try {
      const answer = await diagnose(modelSelect.value, files, { rate: rate.value, stride: stride.value, channel: channel.value });
      const model = models.find((m) => m.name === answer.model.name);
      showAnswer(result, answer, model, label);
    } catch (e) {
      result.replaceChildren();
      showError(e);
    }
  };

  fileInput.addEventListener('change', () => {
    if (fileInput.files.length) send([...fileInput.files], [...fileInput.files].map((f) => f.name).join(', '));
  });
  drop.addEventListener('click', () => fileInput.click());
  drop.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); fileInput.click(); } });
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    const files = [...e.dataTransfer.files];
    if (files.length) send(files, files.map((f) => f.name).join(', '));
  });
  const tryButton = el('button', { type: 'button', id: 'try-example' }, 'Try an example');
  tryButton.addEventListener('click', async () => {
    const url = exampleSelect.value;
    const name = url.split('/').pop();
    try {
      const response = await fetch(url);
      if (!response.ok) throw new Error(`example ${name}: HTTP ${response.status}`);
      send([new File([await response.blob()], name, { type: 'audio/wav' })], name);
    } catch (e) {
      showError(e);
    }
  });

  main.replaceChildren(
    el('h1', {}, 'Diagnose'),
    el('form', { class: 'controls', onsubmit: (e) => e.preventDefault() },
      el('label', {}, 'Model ', modelSelect),
      el('label', {}, 'Recording or images ', fileInput),
      el('label', { title: 'For CSV, .npy, .mat and raw f32, which state no rate' }, 'Rate, Hz ', rate),
      el('label', { title: 'Samples between window starts, at the model\'s rate' }, 'Stride ', stride),
      el('label', { title: 'Which channel (CSV column) a single-channel model reads, from 0' }, 'Channel ', channel),
      el('span', { class: 'group' }, el('label', {}, 'Example ', exampleSelect), tryButton)),
    drop,
    result);
}

async function diagnose(model, files, { rate, stride, channel }) {
  const query = new URLSearchParams({ model, diagnostics: 'full', trace: 'true', spectrum: 'true' });
  const images = files.every((f) => /\.(png|jpe?g)$/i.test(f.name));
  if (!images) {
    if (stride) query.set('stride', stride);
    if (channel) query.set('channel', channel);
    const ext = files[0].name.split('.').pop().toLowerCase();
    if (rate && ext !== 'wav') query.set('sample_rate', rate);
    if (files.length > 1) throw new Error('send one recording at a time (or only images)');
  }
  const form = new FormData();
  // Files the service does not recognise by name or signature are read as raw f32.
  for (const f of files) form.append('file', f, f.name);
  return post(`/diagnose?${query}`, form);
}

function showAnswer(result, answer, model, label) {
  const classes = model.classes;
  const rec = answer.recording;
  const ood = answer.out_of_distribution;
  const verdict = rec ? rec.label : (answer.windows.length === 1 ? answer.windows[0].label : `${answer.windows.length} images`);
  const summary = el('div', { id: 'verdict', class: `verdict ${verdict === 'unknown' ? 'unknown' : ''}` },
    el('span', { class: 'label', style: `border-color: ${classColour(classes, verdict)}` }, verdict),
    rec && rec.closest ? el('span', {}, ` closest: ${rec.closest}`) : null,
    el('span', { class: 'muted' }, ` ${label}: ${answer.windows.length} window(s) of model ${answer.model.name} v${answer.model.version}`),
    rec ? el('span', { class: 'muted' }, `, ${pct(rec.shares[rec.closest || rec.label] ?? 0)} of windows agree`) : null,
    ood ? el('span', { id: 'ood-summary', class: ood.flagged ? 'warn' : 'muted' },
      `; ${ood.flagged} of ${ood.windows} out of distribution (${ood.method}, threshold ${fmt(ood.threshold)})`) : null);
  const parts = [summary];
  if (answer.physics) parts.push(physicsLine(answer.physics));

  const windowSelect = el('select', { id: 'window' }, answer.windows.map((w) =>
    el('option', { value: w.index }, `${rec ? 'window' : 'image'} ${w.index}: ${w.label}${w.out_of_distribution ? ' (out of distribution)' : ''}`)));
  const blocks = el('div', { class: 'chart', id: 'chart-blocks' });
  const blockTable = el('div', { id: 'block-table' });
  const pick = (i) => {
    windowSelect.value = String(i);
    drawBlocks(blocks, blockTable, answer.windows[i]);
  };
  windowSelect.addEventListener('change', () => pick(Number(windowSelect.value)));

  if (rec && answer.trace) {
    const signal = el('div', { class: 'chart', id: 'chart-signal' });
    const probs = el('div', { class: 'chart', id: 'chart-probabilities' });
    parts.push(el('h2', {}, 'Signal, coloured by each window\'s verdict'), el('p', { class: 'muted' }, 'Click a window to see its thresholds.'), signal,
      legend(classes, answer.windows), el('h2', {}, 'Probabilities over time'), probs);
    result.replaceChildren(...parts);
    drawSignal(signal, answer, classes, model, pick);
    drawProbabilities(probs, answer, classes, model);
  } else {
    parts.push(el('h2', {}, 'Probabilities'), probabilityTable(answer.windows, classes));
    result.replaceChildren(...parts);
  }
  result.append(el('h2', {}, 'Inside the network: thresholds per shrinkage block'),
    el('label', {}, 'Show ', windowSelect), blocks, blockTable);
  if (answer.physics && answer.physics.envelope_spectrum) {
    const spectrum = el('div', { class: 'chart', id: 'chart-spectrum' });
    result.append(el('h2', {}, 'Envelope spectrum and the bearing\'s defect frequencies'), spectrum);
    drawSpectrum(spectrum, answer.physics);
  }
  pick(0);
}

function physicsLine(p) {
  const e = p.evidence;
  return el('p', { id: 'physics', class: `physics ${p.agreement}` },
    el('strong', {}, `Physics: ${verdictText(e.verdict)}`),
    ` (${p.agreement.replace('_', ' ')}: ${p.agreement_reason}). Shaft ${fmt(e.shaft.rpm)} rpm; ${e.reason}`);
}

/// `"none"`, `"inconclusive"` or `{"fault": "outer_race"}`.
function verdictText(verdict) {
  return (typeof verdict === 'string' ? verdict : `${verdict.fault} fault`).replace('_', ' ');
}

function legend(classes, windows) {
  const seen = [...new Set(windows.map((w) => (w.out_of_distribution ? 'unknown' : w.label)))];
  return el('p', { class: 'legend' }, seen.map((label) =>
    el('span', {}, el('i', { style: `background: ${classColour(classes, label)}` }), label === 'unknown' ? 'out of distribution' : label)));
}

function windowSeconds(answer, model) {
  const rate = answer.recording.sample_rate || 1;
  const length = model.input_shape[model.input_shape.length - 1];
  return answer.windows.map((w) => ({ w, from: w.start / rate, to: (w.start + length) / rate }));
}

function drawSignal(container, answer, classes, model, pick) {
  const t = answer.trace;
  const rate = t.sample_rate || 1;
  const x = t.min.map((_, i) => (i * t.samples_per_point) / rate);
  // Neighbouring windows alternate in strength, so that each can be told apart.
  const spans = windowSeconds(answer, model).map(({ w, from, to }) => ({
    from, to, colour: withAlpha(classColour(classes, w.out_of_distribution ? 'unknown' : w.label), w.index % 2 ? 0.4 : 0.2),
  }));
  const spanned = windowSeconds(answer, model);
  lineChart(container, {
    x,
    xLabel: 's',
    yLabel: 'signal',
    series: [{ label: 'max', values: t.max, colour: '#333' }, { label: 'min', values: t.min, colour: '#333' }],
    hooks: { drawClear: [spanFill(spans)] },
    onClick: (seconds) => {
      const hit = spanned.findIndex(({ from, to }) => seconds >= from && seconds < to);
      if (hit >= 0) pick(hit);
    },
  });
}

function drawProbabilities(container, answer, classes, model) {
  const times = windowSeconds(answer, model).map(({ from, to }) => (from + to) / 2);
  // The classes that matter somewhere in the recording, not ten flat lines at zero.
  const shown = classes.filter((c) => answer.windows.some((w) => w.probabilities[c] > 0.02));
  lineChart(container, {
    x: times,
    xLabel: 's (window centre)',
    yLabel: 'probability',
    scales: { y: { range: [0, 1] } },
    series: shown.map((c) => ({ label: c, values: answer.windows.map((w) => w.probabilities[c]), colour: classColour(classes, c), points: true })),
  });
}

function drawBlocks(container, table, window) {
  const blocks = window.blocks || [];
  const mean = (values) => (values && values.length ? values.reduce((a, b) => a + b, 0) / values.length : null);
  lineChart(container, {
    x: blocks.map((_, i) => i),
    xLabel: 'shrinkage block (input side to output side; an ensemble\'s members one after another)',
    yLabel: 'mean over channels',
    scales: { share: { range: [0, 1] } },
    axes: [{ scale: 'share', side: 1, label: 'share zeroed', grid: { show: false } }],
    series: [
      { label: 'zeroed share', values: blocks.map((b) => b.zeroed_fraction), colour: '#d62728', fill: withAlpha('#d62728', 0.25), scale: 'share', bars: true },
      { label: 'mean |x|', values: blocks.map((b) => mean(b.mean_abs)), colour: '#1f77b4', points: true },
      { label: 'threshold', values: blocks.map((b) => mean(b.thresholds)), colour: '#ff7f0e', points: true },
    ],
  });
  table.replaceChildren(el('table', { class: 'blocks' },
    el('caption', {}, `${window.label}: each block's thresholds (one per channel) and the share of values they set to zero`),
    el('thead', {}, el('tr', {}, el('th', {}, 'block'), el('th', {}, 'stage'), el('th', {}, 'thresholds'), el('th', {}, 'mean |x|'), el('th', {}, 'zeroed'))),
    el('tbody', {}, blocks.map((b) => el('tr', {},
      el('td', {}, b.name), el('td', {}, String(b.stage)),
      el('td', {}, b.thresholds.map(fmt).join(' ')),
      el('td', {}, (b.mean_abs || []).map(fmt).join(' ')),
      el('td', {}, pct(b.zeroed_fraction)))))));
}

function drawSpectrum(container, physics) {
  const s = physics.envelope_spectrum;
  const f = physics.evidence.defect_frequencies_hz;
  const marks = [
    { x: f.bpfo, label: 'BPFO', colour: '#1f77b4' },
    { x: f.bpfi, label: 'BPFI', colour: '#d62728' },
    { x: 2 * f.bsf, label: '2xBSF', colour: '#9467bd' },
    { x: f.ftf, label: 'FTF', colour: '#7f7f7f' },
  ];
  lineChart(container, {
    x: s.amplitudes.map((_, i) => i * s.resolution_hz),
    xLabel: 'Hz',
    yLabel: 'envelope amplitude',
    series: [{ label: 'envelope spectrum', values: s.amplitudes, colour: '#333' }],
    hooks: { draw: [markLines(marks)] },
  });
}

function probabilityTable(windows, classes) {
  return el('table', { class: 'probabilities' },
    el('thead', {}, el('tr', {}, el('th', {}, '#'), el('th', {}, 'label'), classes.map((c) => el('th', {}, c)))),
    el('tbody', {}, windows.map((w) => el('tr', {}, el('td', {}, String(w.index)), el('td', {}, w.label),
      classes.map((c) => el('td', {}, pct(w.probabilities[c])))))));
}
