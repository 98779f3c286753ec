// The API client: same origin, the read key from sessionStorage in `Authorization`, JSON errors as ApiError.

const KEY = 'commerce-analytics.read-key';

export class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `request failed with status ${status}`);
    this.status = status;
    this.code = e.code || 'http_' + status;
    this.field = e.field || null;
  }
}

export const keyStore = {
  get: () => sessionStorage.getItem(KEY),
  set: (k) => sessionStorage.setItem(KEY, k),
  clear: () => sessionStorage.removeItem(KEY),
};

export async function call(method, path, body, key = keyStore.get()) {
  const headers = { authorization: `Bearer ${key}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  let resp;
  try {
    resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, { error: { code: 'network_error', message: 'The API cannot be reached: ' + e.message } });
  }
  const text = await resp.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!resp.ok) throw new ApiError(resp.status, json);
  return json;
}

export const get = (path, key) => call('GET', path, undefined, key);

/// A CSV export of `path` (a read with `format=csv`), saved as the file the API names.
export async function download(path, key = keyStore.get()) {
  let resp;
  try {
    resp = await fetch(path, { headers: { authorization: `Bearer ${key}`, accept: 'text/csv' } });
  } catch (e) {
    throw new ApiError(0, { error: { code: 'network_error', message: 'The API cannot be reached: ' + e.message } });
  }
  if (!resp.ok) {
    let json = null;
    try { json = await resp.json(); } catch { /* not JSON */ }
    throw new ApiError(resp.status, json);
  }
  const name = /filename="([^"]+)"/.exec(resp.headers.get('content-disposition') || '')?.[1] || 'export.csv';
  const url = URL.createObjectURL(await resp.blob());
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
