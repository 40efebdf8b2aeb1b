// The dashboard's router: `#/diagnose`, `#/models[/NAME]`, `#/jobs[/ID][?status=S]`,
// `#/datasets[/NAME]`. Each page renders itself from the public API into <main>.

import { showError } from './api.js';
import * as diagnose from './diagnose.js';
import * as models from './models.js';
import * as jobs from './jobs.js';
import * as datasets from './datasets.js';

const pages = { diagnose, models, jobs, datasets };
let current = 0;

async function route() {
  const [path, search] = (location.hash.slice(1) || '/diagnose').split('?');
  const [, page = 'diagnose', arg] = path.split('/');
  const name = pages[page] ? page : 'diagnose';
  jobs.leave();
  for (const link of document.querySelectorAll('nav a')) {
    link.setAttribute('aria-current', link.id === `nav-${name}` ? 'page' : 'false');
  }
  // A page still loading when the user moves on renders into a detached element, never
  // over the page that replaced it.
  const mine = ++current;
  const main = document.getElementById('main');
  const target = document.createElement('div');
  main.dataset.page = name;
  main.dataset.ready = 'false';
  main.replaceChildren(target);
  showError(null);
  try {
    await pages[name].render(target, arg ? decodeURIComponent(arg) : null, new URLSearchParams(search || ''));
  } catch (e) {
    if (mine === current) showError(e);
  }
  if (mine !== current) return;
  main.dataset.ready = 'true';
}

window.addEventListener('hashchange', route);
route();
