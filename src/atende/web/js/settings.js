// WhatsApp settings (admins): each session's live state and webhook URL, connect with a QR
// code, disconnect; and a "new connection" form that shows a generated webhook secret once.

import { ApiError, get, isAdmin, post, simulatorOn } from "./api.js";
import { clear, h } from "./dom.js";
import { formatTime, t } from "./i18n.js";
import { realtime } from "./realtime.js";

const BASE = "/api/v1/whatsapp/sessions";
const PROVIDERS = ["waha", "evolution", "cloud", "connection_service"];

export function mountSettings(view) {
  const sessions = new Map();
  const grid = h("div", { class: "session-grid", testid: "session-list" });
  const notice = h("p", { class: "notice", testid: "settings-notice", hidden: true });
  const created = h("div", { class: "notice created", testid: "session-created", hidden: true });
  view.classList.add("page");
  clear(
    view,
    h("div", { class: "page-head" }, h("h1", {}, t("settings.title")), h("p", { class: "muted" }, t("settings.subtitle"))),
    notice,
    created,
    grid,
  );

  function say(text) {
    notice.textContent = text;
    notice.hidden = !text;
  }

  if (!isAdmin()) {
    say(t("settings.admins"));
    return () => {};
  }

  function newSessionForm() {
    const providers = simulatorOn() ? [...PROVIDERS, "sandbox"] : PROVIDERS;
    const field = (name, attrs = {}) => h("input", { name, testid: `new-session-${name}`, ...attrs });
    const provider = h("select", { name: "provider", testid: "new-session-provider" }, providers.map((p) => h("option", { value: p }, p)));
    const inputs = {
      name: field("name", { required: true, maxlength: 200 }),
      base_url: field("base_url", { type: "url", placeholder: "https://", maxlength: 500 }),
      api_key: field("api_key", { type: "password", autocomplete: "off", maxlength: 500 }),
      webhook_secret: field("webhook_secret", { type: "password", autocomplete: "off", maxlength: 500, placeholder: t("settings.secretAuto") }),
    };
    const error = h("p", { class: "form-error", testid: "new-session-error", role: "alert" });
    return h(
      "form",
      {
        class: "session-card new-session",
        testid: "new-session-form",
        onsubmit: async (event) => {
          event.preventDefault();
          error.textContent = "";
          const body = { provider: provider.value };
          for (const [key, input] of Object.entries(inputs)) if (input.value.trim()) body[key] = input.value.trim();
          try {
            showCreated(await post(BASE, body));
            event.target.reset();
            await load();
          } catch (err) {
            error.textContent = err?.message || t("error.generic");
          }
        },
      },
      h("h3", {}, t("settings.new")),
      h("label", {}, t("settings.provider"), provider),
      h("label", {}, t("settings.name"), inputs.name),
      h("label", {}, t("settings.baseUrl"), inputs.base_url),
      h("label", {}, t("settings.apiKey"), inputs.api_key),
      h("label", {}, t("settings.secret"), inputs.webhook_secret),
      error,
      h("button", { type: "submit", class: "btn primary small", testid: "new-session-submit" }, t("settings.create")),
    );
  }

  /** The webhook URL, and a generated secret: shown this once (the server never shows it again). */
  function showCreated(session) {
    clear(
      created,
      h("p", {}, h("strong", {}, t("settings.created", { name: session.name }))),
      h("p", { class: "small" }, `${t("settings.webhookUrl")}: `, h("code", { testid: "created-webhook-url" }, session.webhook_url)),
      session.webhook_secret && h("p", { class: "small" }, `${t("settings.secret")}: `, h("code", { testid: "created-webhook-secret" }, session.webhook_secret)),
      session.webhook_secret && h("p", { class: "small muted" }, t("settings.secretOnce")),
    );
    created.hidden = false;
  }

  view.append(newSessionForm());

  async function load() {
    try {
      const list = await get(BASE);
      sessions.clear();
      for (const s of list) sessions.set(s.id, s);
      say(list.length ? "" : t("settings.empty"));
      render();
    } catch (err) {
      say(err instanceof ApiError && err.status === 403 ? t("settings.admins") : t("settings.unavailable"));
    }
  }

  async function act(id, verb) {
    const card = grid.querySelector(`[data-session-id="${CSS.escape(id)}"]`);
    card?.classList.add("busy");
    try {
      const updated = await post(`${BASE}/${id}/${verb}`);
      if (updated?.id) sessions.set(updated.id, { ...sessions.get(updated.id), ...updated });
      else await load();
      say("");
    } catch (err) {
      say(err?.message || t("error.generic"));
    } finally {
      render();
    }
  }

  function render() {
    clear(grid, [...sessions.values()].map(card));
  }

  function card(s) {
    const state = s.state || (s.connected ? "connected" : "disconnected");
    const qr = state === "qr" && typeof s.qr === "string" && s.qr.startsWith("data:image/") ? s.qr : null;
    return h(
      "article",
      { class: "session-card", testid: "session-card", "data-session-id": s.id, "data-state": state },
      h("div", { class: "session-top" },
        h("div", {}, h("h3", { testid: "session-name" }, s.name), h("p", { class: "muted small" }, s.provider)),
        h("span", { class: `state-pill st-${state}`, testid: "session-state", "data-state": state }, t(`state.${state}`))),
      s.phone && h("p", { class: "small" }, `${t("settings.phone")}: `, h("strong", { testid: "session-phone" }, s.phone)),
      s.webhook_url && h("p", { class: "small webhook-url" }, `${t("settings.webhookUrl")}: `, h("code", { testid: "session-webhook-url" }, s.webhook_url)),
      qr && h("div", { class: "qr-box" }, h("img", { src: qr, alt: "QR code", testid: "session-qr" }), h("p", { class: "small muted" }, t("settings.scan"))),
      s.last_error && h("p", { class: "send-error small", testid: "session-error" }, s.last_error),
      h("div", { class: "session-actions" },
        state === "disconnected" && h("button", { class: "btn primary small", testid: "session-connect", onclick: () => act(s.id, "connect") }, t("settings.connect")),
        state !== "disconnected" && h("button", { class: "btn ghost small", testid: "session-disconnect", onclick: () => act(s.id, "disconnect") }, t("settings.disconnect")),
        s.updated_at && h("span", { class: "muted small updated" }, `${t("settings.updated")} ${formatTime(s.updated_at)}`)),
    );
  }

  const offs = [
    realtime.on("connection_status", (data) => {
      const known = sessions.get(data.session_id);
      if (!known) {
        load();
        return;
      }
      sessions.set(known.id, {
        ...known,
        state: data.state,
        connected: data.whatsapp_connected,
        qr: data.qr,
        last_error: data.error,
        updated_at: new Date().toISOString(),
      });
      render();
    }),
    realtime.on("resync_required", load),
  ];
  load();
  return () => offs.forEach((off) => off());
}
