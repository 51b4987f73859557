// The REST client: tokens in localStorage, refreshed before they expire, errors as ApiError.

const KEY = "atende.auth";
const REFRESH_MARGIN_MS = 60_000;

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message || `HTTP ${status}`);
    this.status = status;
    this.code = body?.error_code || "HTTP_ERROR";
    this.details = body?.details;
  }
}

let auth = load();
let refreshTimer = null;
let refreshing = null;
const authListeners = new Set();

function load() {
  try {
    return JSON.parse(localStorage.getItem(KEY)) || null;
  } catch {
    return null;
  }
}

function store(tokens) {
  auth = tokens
    ? { ...tokens, expires_at: Date.now() + (tokens.expires_in ?? 3600) * 1000 }
    : null;
  if (auth) localStorage.setItem(KEY, JSON.stringify(auth));
  else localStorage.removeItem(KEY);
  scheduleRefresh();
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

export async function login(email, password) {
  store(await request("POST", "/api/v1/auth/login", { email, password }, { anonymous: true }));
  return auth.user;
}

export function logout() {
  store(null);
}

/** Exchange the refresh token for a new pair (one request at a time). */
export function refresh() {
  if (!auth?.refresh_token) return Promise.reject(new ApiError(401, { message: "Not logged in" }));
  refreshing ??= request("POST", "/api/v1/auth/refresh", { refresh_token: auth.refresh_token }, {
    anonymous: true,
  })
    .then((tokens) => store(tokens))
    .catch((err) => {
      if (err.status === 401) store(null);
      throw err;
    })
    .finally(() => {
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
  if (response.status === 401 && !anonymous && !retried && auth?.refresh_token) {
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

scheduleRefresh();
