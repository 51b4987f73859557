// The REST client. The access token lives in memory only; the refresh token lives in an
// HttpOnly cookie the server sets (scoped to /api/v1/auth), so no script in the page, ours or
// anyone's, can read either from storage. A reload gets a new access token from the cookie.

const LEGACY_KEY = "atende.auth"; // where tokens used to be kept: cleared, never read
const REFRESH_MARGIN_MS = 60_000;

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message || `HTTP ${status}`);
    this.status = status;
    this.code = body?.error_code || "HTTP_ERROR";
    this.details = body?.details;
    this.retryAfter = body?.retry_after;
  }
}

let auth = null; // {access_token, expires_at, user}
let refreshTimer = null;
let refreshing = null;
const authListeners = new Set();

try {
  localStorage.removeItem(LEGACY_KEY);
} catch {
  /* storage disabled */
}

function store(tokens) {
  auth = tokens
    ? { access_token: tokens.access_token, user: tokens.user, features: tokens.features || {}, expires_at: Date.now() + (tokens.expires_in ?? 3600) * 1000 }
    : null;
    for (const fn of authListeners) fn(auth);
}

function scheduleRefresh() {
  clearTimeout(refreshTimer);
  if (!auth) return;
  const wait = Math.max(1_000, auth.expires_at - Date.now() - REFRESH_MARGIN_MS);
  refreshTimer = setTimeout(() => refresh().catch(() => {}), Math.min(wait, 2 ** 31 - 1));
}

export function onAuthChange(fn) {
  authListeners.add(fn);
  return () => authListeners.delete(fn);
}

export const currentUser = () => auth?.user ?? null;
export const accessToken = () => auth?.access_token ?? null;
export const isAdmin = () => auth?.user?.role === "admin";
/** The customer simulator: the server says so (admins only, and only with the sandbox on). */
export const simulatorOn = () => isAdmin() && auth?.features?.sandbox === true;

export async function login(email, password) {
  store(await request("POST", "/api/v1/auth/login", { email, password, refresh_token_in: "cookie" }, { anonymous: true }));
  return auth.user;
}

/** End the session on the server (every tab and device), then here. */
export async function logout() {
  try {
    if (auth) await request("POST", "/api/v1/auth/logout");
  } catch {
    /* already ended: forget it here anyway */
  }
  store(null);
}

/** Forget the session here only (the server already ended it). */
export function forget() {
  store(null);
}

/** At page load: a new access token from the refresh cookie, if there is a session. */
export async function resume() {
  try {
    await refresh();
  } catch {
    /* no session: the login page */
  }
  return currentUser();
}

async function refreshNow() {
  try {
    store(await request("POST", "/api/v1/auth/refresh", undefined, { anonymous: true }));
  } catch (err) {
    if (err.status === 401 || err.status === 403) store(null);
    throw err;
  }
}

/** Exchange the refresh cookie for a new access token (one request at a time, across tabs:
 *  the cookie rotates, and two tabs presenting the same one would look like a theft). */
export function refresh() {
  refreshing ??= (navigator.locks ? navigator.locks.request("atende-refresh", refreshNow) : refreshNow()).finally(() => {
    refreshing = null;
  });
  return refreshing;
}

/** Raw fetch with auth; answers the Response (for headers and blobs). */
export async function fetchAuthed(method, path, body, { anonymous = false, retried = false } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (!anonymous && auth) {
    if (auth.expires_at - Date.now() < 5_000) await refresh().catch(() => {});
    headers.Authorization = `Bearer ${auth?.access_token}`;
  }
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401 && !anonymous && !retried && auth) {
    await refresh();
    return fetchAuthed(method, path, body, { anonymous, retried: true });
  }
  if (!response.ok) {
    let payload = null;
    try {
      payload = await response.json();
    } catch {
      /* not JSON */
    }
    throw new ApiError(response.status, payload);
  }
  return response;
}

export async function request(method, path, body, options) {
  const response = await fetchAuthed(method, path, body, options);
  return response.status === 204 ? null : response.json();
}

export const get = (path) => request("GET", path);
export const post = (path, body = {}) => request("POST", path, body);

// The endpoints the pages use.
export async function listConversations({ status, search, limit = 100 } = {}) {
  const params = new URLSearchParams({ limit: String(limit) });
  if (status) params.set("status", status);
  if (search) params.set("search", search);
  const response = await fetchAuthed("GET", `/api/v1/conversations?${params}`);
  return {
    items: await response.json(),
    total: Number(response.headers.get("X-Total-Count") || 0),
    capped: response.headers.get("X-Total-Count-Capped") === "true",
  };
}

export async function listMessages(conversationId, { before, limit = 50 } = {}) {
  const params = new URLSearchParams({ limit: String(limit) });
  if (before) params.set("before", before);
  const response = await fetchAuthed(
    "GET",
    `/api/v1/conversations/${conversationId}/messages?${params}`,
  );
  return { items: await response.json(), hasMore: response.headers.get("X-Has-More") === "true" };
}

export const conversationPath = (id, tail = "") => `/api/v1/conversations/${id}${tail}`;

/** Media needs the bearer token, so it is fetched and shown through an object URL. */
export async function mediaUrl(path) {
  const response = await fetchAuthed("GET", path);
  return URL.createObjectURL(await response.blob());
}

/**
 * Save a customer's file. It is re-typed as application/octet-stream and handed to a `download`
 * link, never opened: a blob URL is of Atende's own origin, so an HTML file opened as a page
 * would run its script next to the agent's session.
 */
export async function downloadMedia(path, filename) {
  const response = await fetchAuthed("GET", path);
  const blob = new Blob([await response.arrayBuffer()], { type: "application/octet-stream" });
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = filename || "arquivo";
  link.rel = "noopener";
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000); // the download has its own copy by then
}

