// WhatsApp settings (admins): each session's live state, connect with a QR code, disconnect.

import { ApiError, get, isAdmin, post } from "./api.js";
import { clear, h } from "./dom.js";
import { formatTime, t } from "./i18n.js";
import { realtime } from "./realtime.js";

const BASE = "/api/v1/whatsapp/sessions";

export function mountSettings(view) {
  const sessions = new Map();
  const grid = h("div", { class: "session-grid", testid: "session-list" });
  const notice = h("p", { class: "notice", testid: "settings-notice", hidden: true });
  view.classList.add("page");
  clear(
    view,
    h("div", { class: "page-head" }, h("h1", {}, t("settings.title")), h("p", { class: "muted" }, t("settings.subtitle"))),
    notice,
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
