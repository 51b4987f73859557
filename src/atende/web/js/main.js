// The app shell: hash routes, the top bar, login and logout.

import { currentUser, forget, isAdmin, login, logout, onAuthChange, resume, simulatorOn } from "./api.js";
import { clear, h } from "./dom.js";
import { getLang, t, toggleLang } from "./i18n.js";
import { mountInbox } from "./inbox.js";
import { realtime } from "./realtime.js";
import { mountSettings } from "./settings.js";
import { mountSimulatorPage } from "./simulator.js";

const app = document.getElementById("app");
const ROUTES = { inbox: mountInbox, settings: mountSettings, simulator: mountSimulatorPage };
let unmount = null;

function route() {
  const name = location.hash.replace(/^#\/?/, "") || "inbox";
  if (name === "simulator" && !simulatorOn()) return "inbox";
  return name === "login" || name in ROUTES ? name : "inbox";
}

function render() {
  unmount?.();
  unmount = null;
  const name = route();
  if (!currentUser()) {
    realtime.stop();
    if (name !== "login") history.replaceState(null, "", "#/login");
    clear(app, loginView());
    return;
  }
  if (name === "login") {
    location.hash = "#/inbox";
    return;
  }
  realtime.start();
  const view = h("main", { class: "view", testid: `page-${name}` });
  clear(app, topBar(name), offlineBanner(), view);
  unmount = ROUTES[name](view);
}

function loginView() {
  const error = h("p", { class: "form-error", testid: "login-error", role: "alert" });
  const email = h("input", { type: "email", name: "email", required: true, autocomplete: "username", testid: "login-email" });
  const password = h("input", { type: "password", name: "password", required: true, autocomplete: "current-password", testid: "login-password" });
  const button = h("button", { type: "submit", class: "btn primary wide", testid: "login-submit" }, t("login.submit"));
  const form = h(
    "form",
    {
      class: "login-card",
      testid: "login-form",
      onsubmit: async (event) => {
        event.preventDefault();
        error.textContent = "";
        button.disabled = true;
        try {
          await login(email.value.trim(), password.value);
          location.hash = "#/inbox";
        } catch (err) {
          error.textContent = loginError(err);
        } finally {
          button.disabled = false;
        }
      },
    },
    h("div", { class: "brand big" }, h("span", { class: "logo" }), t("app.name")),
    h("h1", {}, t("login.title")),
    h("p", { class: "muted" }, t("login.subtitle")),
    h("label", {}, t("login.email"), email),
    h("label", {}, t("login.password"), password),
    error,
    button,
    h("button", { type: "button", class: "link", testid: "lang-toggle", onclick: () => { toggleLang(); render(); } }, t("nav.language")),
  );
  return h("div", { class: "login-page", testid: "page-login" }, form);
}

function loginError(err) {
  if (err.status === 401) return t("login.failed");
  if (err.status === 429) return t("login.throttled", { secs: err.retryAfter ?? 60 });
  return err.message || t("error.generic");
}

function topBar(active) {
  const user = currentUser();
  const link = (name, label) =>
    h("a", { href: `#/${name}`, class: name === active ? "nav-link active" : "nav-link", testid: `nav-${name}` }, label);
  return h(
    "header",
    { class: "topbar" },
    h("div", { class: "brand" }, h("span", { class: "logo" }), t("app.name")),
    h("nav", {}, link("inbox", t("nav.inbox")), isAdmin() && link("settings", t("nav.settings")), simulatorOn() && link("simulator", t("nav.simulator"))),
    h("div", { class: "spacer" }),
    h("button", { class: "btn ghost small", testid: "lang-toggle", title: getLang(), onclick: () => { toggleLang(); render(); } }, t("nav.language")),
    h("span", { class: "user", testid: "current-user" }, user.name || user.email),
    h("button", { class: "btn ghost small", testid: "logout", onclick: () => { logout(); } }, t("nav.logout")),
  );
}

function offlineBanner() {
  const banner = h("div", { class: "offline-banner", testid: "offline-banner", role: "status" }, t("conn.retry"));
  const show = (state) => { banner.hidden = state !== "offline"; };
  show(realtime.state === "connecting" ? "connecting" : realtime.state);
  const off = realtime.on("state", show);
  const observer = new MutationObserver(() => {
    if (!banner.isConnected) { off(); observer.disconnect(); }
  });
  observer.observe(app, { childList: true });
  return banner;
}

onAuthChange((auth) => {
  if (!auth) render();
});
realtime.on("unauthorized", () => forget());
window.addEventListener("hashchange", render);
resume().then(render);
