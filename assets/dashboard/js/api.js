// Calls to the service's public API. The bearer token, when one is needed, is asked for
// once and kept in this module (the tab's memory) only.

let token = null;
let tokenRequired = null;

export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.error ? body.error : `HTTP ${status}`);
    this.status = status;
    this.type = body && body.error_type;
  }
}

async function parse(response) {
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = { error: text };
  }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

export async function get(path) {
  return parse(await fetch(path, { headers: { accept: 'application/json' } }));
}

/// POST `body` (an object is sent as JSON); with `guarded`, the token is sent, asked for
/// first when the service needs one (`GET /auth`) and again once when it refuses it.
export async function post(path, body, { guarded = false, headers = {} } = {}) {
  if (guarded && tokenRequired === null) tokenRequired = (await get('/auth')).token_required;
  if (guarded && tokenRequired && !token) {
    token = await askToken();
    if (!token) throw new Error('this needs the service\'s token');
  }
  const init = () => {
    const h = { accept: 'application/json', ...headers };
    let payload = body;
    if (body !== undefined && !(body instanceof Blob) && !(body instanceof FormData) && !(body instanceof ArrayBuffer)) {
      h['content-type'] = 'application/json';
      payload = JSON.stringify(body);
    }
    if (guarded && token) h.authorization = `Bearer ${token}`;
    return { method: 'POST', headers: h, body: payload };
  };
  let response = await fetch(path, init());
  if (guarded && response.status === 401) {
    token = await askToken();
    if (token) response = await fetch(path, init());
  }
  return parse(response);
}

function askToken() {
  const dialog = document.getElementById('token-dialog');
  const input = document.getElementById('token-input');
  input.value = '';
  dialog.returnValue = '';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => {
      const ok = dialog.returnValue === 'ok' && input.value;
      document.getElementById('token-state').textContent = ok ? 'token set for this tab' : '';
      resolve(ok ? input.value : null);
    }, { once: true });
    dialog.showModal();
    input.focus();
  });
}

/// Shows an error (or clears it with null) in the page's alert line.
export function showError(error) {
  const box = document.getElementById('message');
  box.hidden = !error;
  box.textContent = error ? (error.message || String(error)) : '';
}
