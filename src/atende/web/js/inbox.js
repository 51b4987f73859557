// The atendimento page: conversation list (left), chat (middle), contact panel (right).

import { conversationPath, currentUser, get, isAdmin, listConversations, post, simulatorOn } from "./api.js";
import { createChat } from "./chat.js";
import { avatar, clear, debounce, h } from "./dom.js";
import { formatTime, t } from "./i18n.js";
import { beep, setTitleCount } from "./notify.js";
import { createPanel } from "./panel.js";
import { realtime } from "./realtime.js";
import { createSimulator } from "./simulator.js";

const FILTERS = ["", "active", "waiting", "assigned", "closed"];
const FILTER_LABEL = { "": "filter.all", active: "filter.active", waiting: "filter.waiting", assigned: "filter.assigned", closed: "filter.closed" };

export function mountInbox(view) {
  const me = currentUser();
  const state = { filter: "", search: "", convs: new Map(), openId: null, loadSeq: 0, total: 0, capped: false, live: null };

  const listEl = h("ul", { class: "conv-list", testid: "conversation-list" });
  const countEl = h("span", { class: "muted small", testid: "conversation-count" });
  const connEl = h("span", { class: "conn", testid: "connection-indicator" });
  const search = h("input", {
    type: "search",
    class: "search",
    placeholder: t("list.search"),
    testid: "search-input",
    oninput: debounce(() => {
      state.search = search.value.trim();
      reload();
    }, 300),
  });
  const filterBar = h(
    "div",
    { class: "filters", role: "tablist" },
    FILTERS.map((f) =>
      h("button", { class: "chip", role: "tab", "data-filter": f, testid: `filter-${f || "all"}`, onclick: () => setFilter(f) }, t(FILTER_LABEL[f])),
    ),
  );
  const listCol = h(
    "aside",
    { class: "col list-col" },
    h("div", { class: "col-head" }, h("h2", {}, t("list.title")), countEl, h("div", { class: "spacer" }), connEl),
    h("div", { class: "list-tools" }, search, filterBar),
    listEl,
  );
  const chatCol = h("section", { class: "col chat-col" });
  const panelCol = h("aside", { class: "col panel-col" });
  // Only admins with the sandbox on: an agent must not be able to play a customer.
  const simulator = simulatorOn() ? createSimulator({ floating: true }) : null;
  view.classList.add("inbox");
  clear(view, listCol, chatCol, panelCol, simulator?.element);

  const panel = createPanel(panelCol, { onChange: (conv) => upsert(conv) });
  const chat = createChat(chatCol, {
    onSent: (message, sent) => followSend(message, sent),
    onOpened: (conv) => markRead(conv),
    onBack: () => view.classList.remove("chat-open"),
  });

  /** After a send into a closed conversation, show the conversation the message went into:
   * the same one reopened, or the contact's current one (then say so). */
  async function followSend(message, { wasClosed, fromId }) {
    const moved = message.conversation_id !== fromId;
    if (!wasClosed && !moved) return;
    let target;
    try {
      target = await get(conversationPath(message.conversation_id));
    } catch (err) {
      console.error("loading the conversation of a sent message failed", err);
      return;
    }
    if (state.filter && target.status !== state.filter) setFilter(""); // keep it in sight
    upsert(target);
    if (moved) {
      open(target.id);
      chat.showNotice(t("chat.moved"));
    }
  }

  function setFilter(filter) {
    state.filter = filter;
    for (const chip of filterBar.children) chip.classList.toggle("active", chip.dataset.filter === filter);
    reload();
  }

  async function reload() {
    const seq = ++state.loadSeq;
    const live = new Map(); // updates that arrive while the list loads are newer than it may be
    state.live = live;
    try {
      const { items, total, capped } = await listConversations({ status: state.filter, search: state.search });
      if (seq !== state.loadSeq) return; // a newer filter or search won
      state.convs = new Map(items.map((c) => [c.id, c]));
      state.live = null;
      for (const conv of live.values()) {
        const fetched = state.convs.get(conv.id);
        if (fetched && fetched.updated_at > conv.updated_at) continue;
        if (fetched || (!state.search && visible(conv))) state.convs.set(conv.id, conv);
      }
      state.total = total;
      state.capped = capped;
      renderList();
    } catch (err) {
      console.error("loading conversations failed", err);
    }
  }

  function visible(conv) {
    if (state.filter && conv.status !== state.filter) return false;
    return isAdmin() || !conv.assignee_id || conv.assignee_id === me.id;
  }

  const reloadSoon = debounce(reload, 250);

  function upsert(conv) {
    state.live?.set(conv.id, conv);
    const known = state.convs.has(conv.id);
    if (!visible(conv)) {
      if (known) {
        state.convs.delete(conv.id);
        state.total -= 1;
        renderList();
      }
    } else if (known || !state.search) {
      if (!known) state.total += 1;
      state.convs.set(conv.id, conv);
      renderList();
    } else {
      reloadSoon(); // the server decides what matches a search
    }
    if (conv.id === state.openId) {
      chat.update(conv);
      panel.show(conv);
    }
  }

  function sorted() {
    const time = (c) => (c.last_message_time ? Date.parse(c.last_message_time) : 0);
    return [...state.convs.values()].sort((a, b) => time(b) - time(a));
  }

  function renderList() {
    const items = sorted();
    // Past the server's count cap the figure is a floor: "10000+".
    countEl.textContent = String(Math.max(state.total, items.length)) + (state.capped ? "+" : "");
    clear(listEl, items.length ? items.map(itemView) : h("li", { class: "empty", testid: "list-empty" }, t("list.empty")));
    let unseen = 0;
    for (const c of items) if (c.id !== state.openId || document.hidden) unseen += c.unread_count || 0;
    setTitleCount(unseen);
  }

  function itemView(conv) {
    const contact = conv.contact || {};
    const unread = conv.unread_count || 0;
    return h(
      "li",
      {
        class: `conv-item${conv.id === state.openId ? " selected" : ""}${unread ? " unread" : ""}`,
        testid: "conversation-item",
        "data-conversation-id": conv.id,
        "data-status": conv.status,
        onclick: () => open(conv.id),
      },
      avatar(contact.name || contact.phone),
      h(
        "div",
        { class: "conv-main" },
        h("div", { class: "conv-top" },
          h("span", { class: "conv-name", testid: "conversation-name" }, contact.name || contact.phone || "—"),
          h("span", { class: "conv-time", testid: "conversation-time" }, formatTime(conv.last_message_time))),
        h("div", { class: "conv-bottom" },
          h("span", { class: "conv-last", testid: "conversation-last" }, conv.last_message || ""),
          conv.status !== "active" && h("span", { class: `status-dot s-${conv.status}`, title: t(`status.${conv.status}`) }),
          unread > 0 && h("span", { class: "badge", testid: "unread-badge" }, String(unread))),
      ),
    );
  }

  function open(id) {
    const conv = state.convs.get(id);
    if (!conv) return;
    state.openId = id;
    view.classList.add("chat-open"); // on a phone, the chat replaces the list (app.css)
    chat.open(conv);
    panel.show(conv);
    markRead(conv);
  }

  async function markRead(conv) {
    if (!conv.unread_count || document.hidden) return;
    state.convs.set(conv.id, { ...conv, unread_count: 0 });
    renderList();
    try {
      await post(conversationPath(conv.id, "/read"));
    } catch (err) {
      console.error("mark read failed", err);
    }
  }

  const showConn = (s) => {
    connEl.dataset.state = s;
    connEl.title = t(`conn.${s}`);
    clear(connEl, h("i"), t(`conn.${s}`));
  };
  showConn(realtime.state);

  const offs = [
    realtime.on("state", showConn),
    realtime.on("conversation_updated", (conv) => {
      upsert(conv);
      if (conv.id === state.openId && conv.unread_count) markRead(conv);
    }),
    realtime.on("message_received", (msg) => {
      chat.addMessage(msg);
      if (msg.conversation_id !== state.openId || document.hidden) beep();
    }),
    realtime.on("message_sent", (msg) => chat.addMessage(msg)),
    realtime.on("message_status_updated", (data) => chat.setStatus(data)),
    realtime.on("typing_start", (data) => chat.typing(data, true)),
    realtime.on("typing_stop", (data) => chat.typing(data, false)),
    realtime.on("resync_required", () => {
      reload();
      chat.reload();
    }),
  ];
  const onVisible = () => {
    const conv = state.convs.get(state.openId);
    if (!document.hidden && conv) markRead(conv);
    renderList();
  };
  document.addEventListener("visibilitychange", onVisible);

  setFilter("");
  chat.open(null);
  panel.show(null);

  return () => {
    for (const off of offs) off();
    document.removeEventListener("visibilitychange", onVisible);
    chat.destroy();
    simulator?.destroy();
    setTitleCount(0);
  };
}
