// The datasets page: upload class folders (each file labelled by its folder) or an archive
// of them, and see the files per class of every uploaded dataset.

import { get, post, showError } from './api.js';
import { el } from './dom.js';

export async function render(main, name) {
  const datasets = await get('/datasets');
  const nameInput = el('input', { id: 'dataset-name', required: true, pattern: '[a-z0-9._\\-]+', placeholder: 'pump7', value: name || '' });
  const folder = el('input', { type: 'file', id: 'dataset-folder', webkitdirectory: true, multiple: true });
  const archive = el('input', { type: 'file', id: 'dataset-archive', accept: '.tar,.tgz,.tar.gz,.zip' });
  const status = el('p', { id: 'upload-status', 'aria-live': 'polite' });
  const detail = el('section', { id: 'dataset-detail' });

  const uploadFolder = async () => {
    // Hidden files (.DS_Store and the like) are no recordings.
    const files = [...folder.files].filter((f) => !f.name.startsWith('.'));
    let done = 0;
    for (const f of files) {
      // `<picked folder>/<label>/<file>`: the class is the file's folder.
      const parts = (f.webkitRelativePath || f.name).split('/');
      const label = parts.length >= 2 ? parts[parts.length - 2] : '';
      const query = new URLSearchParams({ label, file: f.name });
      await post(`/datasets/${encodeURIComponent(nameInput.value)}/files?${query}`, f,
        { guarded: true, headers: { 'content-type': 'application/octet-stream' } });
      done += 1;
      status.textContent = `${done} of ${files.length} files uploaded`;
    }
  };
  const uploadArchive = async () => {
    const f = archive.files[0];
    status.textContent = `uploading ${f.name}...`;
    const answer = await post(`/datasets/${encodeURIComponent(nameInput.value)}/archive`, f,
      { guarded: true, headers: { 'content-type': 'application/octet-stream' } });
    status.textContent = `${answer.stored.length} files stored from ${f.name}`;
  };
  const form = el('form', { id: 'upload-form', class: 'controls wrap' },
    el('label', {}, 'Dataset name ', nameInput),
    el('label', {}, 'Class folders ', folder),
    el('label', {}, 'or an archive of them ', archive),
    el('button', { type: 'submit', id: 'upload' }, 'Upload'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    showError(null);
    try {
      if (folder.files.length) await uploadFolder();
      else if (archive.files.length) await uploadArchive();
      else throw new Error('pick class folders or an archive');
      location.hash = `#/datasets/${encodeURIComponent(nameInput.value)}`;
      await show(detail, nameInput.value);
    } catch (err) {
      showError(err);
    }
  });

  main.replaceChildren(
    el('h1', {}, 'Datasets'),
    el('p', { class: 'muted' }, 'A dataset is a folder of class folders, <label>/<file>: WAV, CSV, .npy, .mat, PNG or JPEG.'),
    form, status,
    el('table', { id: 'datasets', class: 'datasets' },
      el('caption', {}, 'Uploaded datasets'),
      el('thead', {}, el('tr', {}, ['name', 'path (for a job)', 'files', 'classes'].map((h) => el('th', {}, h)))),
      el('tbody', {}, datasets.map((d) => el('tr', {},
        el('td', {}, el('a', { href: `#/datasets/${encodeURIComponent(d.name)}` }, d.name)),
        el('td', {}, el('code', {}, d.path)), el('td', {}, String(d.files)), el('td', {}, String(d.classes.length)))))),
    detail);
  if (name) await show(detail, name);
}

async function show(detail, name) {
  const d = await get(`/datasets/${encodeURIComponent(name)}`);
  detail.replaceChildren(
    el('h2', {}, `${d.name}: ${d.files} files`),
    el('table', { id: 'class-counts' },
      el('thead', {}, el('tr', {}, el('th', {}, 'class'), el('th', {}, 'files'), el('th', {}, 'kB'))),
      el('tbody', {}, d.classes.map((c) => el('tr', { 'data-class': c.label },
        el('td', {}, c.label), el('td', {}, String(c.files)), el('td', {}, String(Math.round(c.bytes / 1024))))))));
}
