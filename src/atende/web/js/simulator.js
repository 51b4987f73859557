// The customer simulator: a phone-like panel where one plays the customer of a sandbox session.

import { get, listConversations, listMessages, post } from "./api.js";
import { clear, h } from "./dom.js";
import { formatClock, t } from "./i18n.js";
import { realtime } from "./realtime.js";

const PREFS = "atende.simulator";

function prefs() {
  try {
    return JSON.parse(localStorage.getItem(PREFS)) || {};
  } catch {
    return {};
  }
}

export function createSimulator({ floating = false } = {}) {
  const saved = prefs();
  let conversationId = null;
  const seen = new Set();

  const sessionSelect = h("select", { testid: "sim-session" });
  const phone = h("input", { value: saved.phone || "5511987650000", inputmode: "tel", testid: "sim-phone", onchange: () => { remember(); findConversation(); } });
  const name = h("input", { value: saved.name || "Cliente Teste", testid: "sim-name", onchange: remember });
  const thread = h("div", { class: "sim-thread", testid: "sim-thread" }, h("p", { class: "sim-hint small" }, t("sim.hint")));
  const input = h("input", { placeholder: t("sim.placeholder"), testid: "sim-input", onkeydown: (e) => e.key === "Enter" && send() });
  const error = h("p", { class: "send-error small", testid: "sim-error", hidden: true });
  const phoneEl = h(
    "div",
    { class: "phone", testid: "simulator" },
    h("div", { class: "phone-head" }, h("strong", {}, t("sim.title")), floating && h("button", { class: "icon-btn", "aria-label": "×", onclick: () => toggle(false) }, "×")),
    h("div", { class: "phone-setup" },
      h("label", {}, t("sim.session"), sessionSelect),
      h("div", { class: "row" }, h("label", {}, t("sim.phone"), phone), h("label", {}, t("sim.name"), name))),
    thread,
    error,
    h("div", { class: "phone-compose" }, input, h("button", { class: "btn primary round", testid: "sim-send", "aria-label": t("chat.send"), onclick: () => send() }, "➤")),
  );
  const fab = h("button", { class: "fab", testid: "simulator-toggle", onclick: () => toggle() }, h("span", { class: "fab-phone" }), t("sim.toggle"));
  const element = floating ? h("div", { class: "sim-float" }, phoneEl, fab) : phoneEl;
  if (floating) phoneEl.hidden = !saved.open;

  function remember() {
    localStorage.setItem(PREFS, JSON.stringify({ phone: phone.value, name: name.value, open: floating ? !phoneEl.hidden : saved.open }));
  }

  function toggle(show = phoneEl.hidden) {
    phoneEl.hidden = !show;
    remember();
    if (show) input.focus();
  }

  const digits = () => phone.value.replace(/\D/g, "");

  async function loadSessions() {
    try {
      const list = await get("/api/v1/sandbox/sessions");
      clear(sessionSelect, list.map((s) => h("option", { value: s.id }, s.name)));
      if (!list.length) showError(t("sim.none"));
    } catch (err) {
      showError(err.message);
    }
  }

  async function findConversation() {
    conversationId = null;
    seen.clear();
    clear(thread, h("p", { class: "sim-hint small" }, t("sim.hint")));
    if (!digits()) return;
    try {
      const { items } = await listConversations({ search: digits(), limit: 5 });
      const match = items.find((c) => c.contact?.phone_number?.endsWith(digits().slice(-8)));
      if (match) await showConversation(match.id);
    } catch {
      /* nothing to show yet */
    }
  }

  async function showConversation(id) {
    if (conversationId === id) return;
    conversationId = id;
    try {
      const { items } = await listMessages(id, { limit: 50 });
      if (conversationId === id) items.forEach(add);
    } catch {
      /* an agent may not see this conversation; live messages still arrive */
    }
  }

  function add(message) {
    if (message.conversation_id !== conversationId || seen.has(message.id)) return;
    seen.add(message.id);
    thread.querySelector(".sim-hint")?.remove();
    const mine = message.direction === "inbound"; // the customer is "me" here
    const content = message.content || {};
    thread.append(
      h("div", { class: `msg-row ${mine ? "out" : "in"}`, testid: "sim-message", "data-direction": message.direction },
        h("div", { class: "bubble" },
          h("div", { class: "msg-text" }, content.text || content.caption || content.filename || `[${message.message_type}]`),
          h("div", { class: "msg-meta" }, h("span", { class: "msg-time" }, formatClock(message.created_at))))),
    );
    thread.scrollTop = thread.scrollHeight;
  }

  async function send() {
    const text = input.value.trim();
    if (!text) return;
    error.hidden = true;
    input.value = "";
    try {
      const result = await post("/api/v1/sandbox/messages", {
        session_id: sessionSelect.value || undefined,
        from: digits(),
        text,
        push_name: name.value.trim() || undefined,
      });
      if (result.conversation_id) await showConversation(result.conversation_id);
    } catch (err) {
      input.value = text;
      showError(err.message);
    }
  }

  function showError(text) {
    error.textContent = text;
    error.hidden = !text;
  }

  const offs = [realtime.on("message_received", add), realtime.on("message_sent", add)];
  loadSessions();
  findConversation();
  return { element, toggle, destroy: () => offs.forEach((off) => off()) };
}

export function mountSimulatorPage(view) {
  const sim = createSimulator();
  view.classList.add("page", "sim-page");
  clear(
    view,
    h("div", { class: "page-head" }, h("h1", {}, t("sim.title")), h("p", { class: "muted" }, t("sim.subtitle"))),
    h("div", { class: "sim-stage" }, sim.element),
  );
  return sim.destroy;
}
