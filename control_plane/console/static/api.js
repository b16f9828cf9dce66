// The console's only way to the control plane: the public REST API, same origin, signed in with the
// session cookie. State-changing calls carry the session's CSRF token; errors carry the API's text.
let csrf = null;

export class ApiError extends Error {
  constructor(status, code, text) {
    super(text);
    this.status = status;
    this.code = code;
  }
}

export function setCsrf(token) { csrf = token; }

export async function call(method, path, body, { raw = false } = {}) {
  const headers = {};
  const init = { method, headers, credentials: "same-origin" };
  if (body instanceof FormData || body instanceof Blob) {  // a form, or a file sent as it is (a bundle)
    init.body = body;
  } else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  if (method !== "GET" && method !== "HEAD" && csrf) headers["X-CSRF-Token"] = csrf;
  const resp = await fetch(path, init);
  if (!resp.ok) {
    let code = String(resp.status), text = resp.statusText;
    try {
      const err = (await resp.json()).error || {};
      code = err.code || code;
      text = err.text || text;
    } catch { /* not JSON: keep the status line */ }
    throw new ApiError(resp.status, code, text);
  }
  if (raw) return resp;
  return resp.status === 204 ? null : resp.json();
}

export const get = (path, params) => call("GET", params ? `${path}?${query(params)}` : path);
export const post = (path, body) => call("POST", path, body ?? {});
export const put = (path, body) => call("PUT", path, body ?? {});
export const del = (path) => call("DELETE", path);

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  return q.toString();
}
