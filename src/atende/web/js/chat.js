// The chat column: history with older pages on scroll-up, live messages, ticks, typing, composer.

import { conversationPath, currentUser, downloadMedia, listMessages, mediaUrl, post } from "./api.js";
import { avatar, clear, h } from "./dom.js";
import { formatClock, t } from "./i18n.js";
import { realtime } from "./realtime.js";

const RANK = { pending: 0, sent: 1, delivered: 2, read: 3, failed: 4 };
const TICKS = { pending: "◷", sent: "✓", delivered: "✓✓", read: "✓✓", failed: "⚠" };
const PAGE = 50;
const TYPING_SHOWN_MS = 8_000;
const TYPING_SEND_EVERY_MS = 3_000;
const TYPING_IDLE_MS = 4_000;

export function createChat(root, hooks) {
  const me = currentUser();
  let conv = null;
  let messages = new Map(); // id -> {data, el}
  let earlyStatus = new Map(); // statuses that arrived before their message
  let hasMore = false;
  let loadingOlder = false;
  let typingTimer = null;
  let sentTypingAt = 0;
  let idleTimer = null;
  let seq = 0;

  const title = h("div", { class: "chat-title", testid: "chat-title" });
  const subtitle = h("div", { class: "chat-sub muted small", testid: "chat-subtitle" });
  const typingEl = h("div", { class: "chat-typing small", testid: "typing-indicator", hidden: true }, t("chat.typing"));
  const headAvatar = h("span");
  // On a phone the list and the chat take turns (app.css): this goes back to the list.
  const back = h("button", { class: "icon-btn chat-back", testid: "chat-back", title: t("chat.back"), "aria-label": t("chat.back"), onclick: () => hooks.onBack?.() }, "‹");
  const header = h("div", { class: "chat-head" }, back, headAvatar, h("div", {}, title, subtitle, typingEl));
  const olderEl = h("div", { class: "older muted small", testid: "loading-older", hidden: true }, t("chat.older"));
  const list = h("div", { class: "messages", testid: "message-list" });
  const scroller = h("div", { class: "chat-scroll", testid: "chat-scroll", onscroll: () => maybeLoadOlder() }, olderEl, list);
  const error = h("div", { class: "send-error small", testid: "send-error", role: "alert", hidden: true });
  const notice = h("div", { class: "chat-notice small", testid: "chat-notice", role: "status", hidden: true });
  // A closed conversation says what sending does: it reopens it (or, if the contact has a newer
  // open conversation, the message goes there and the inbox moves to it), never a hidden row.
  const closedNote = h("div", { class: "closed-note small", testid: "closed-note", hidden: true }, t("chat.reopens"));
  const input = h("textarea", { rows: 1, placeholder: t("chat.placeholder"), testid: "composer-input", onkeydown: onKey, oninput: onTypingInput });
  const sendBtn = h("button", { class: "btn primary round", title: t("chat.send"), "aria-label": t("chat.send"), testid: "send-button", onclick: () => send() }, "➤");
  const composer = h("div", { class: "composer" }, input, sendBtn);
  const emptyEl = h("div", { class: "chat-empty", testid: "chat-empty" }, h("div", { class: "logo huge" }), h("p", {}, t("chat.empty")));
  const pane = h("div", { class: "chat-pane", testid: "chat" }, header, scroller, notice, error, closedNote, composer);

  function nearBottom() {
    return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 120;
  }

  function scrollToBottom() {
    scroller.scrollTop = scroller.scrollHeight;
  }

  async function open(next) {
    const mySeq = ++seq;
    conv = next;
    messages = new Map();
    earlyStatus = new Map();
    hasMore = false;
    typingEl.hidden = true;
    error.hidden = true;
    notice.hidden = true;
    if (!conv) {
      clear(root, emptyEl);
      return;
    }
    update(conv);
    clear(list);
    clear(root, pane);
    input.value = "";
    input.focus();
    try {
      const page = await listMessages(conv.id, { limit: PAGE });
      if (mySeq !== seq) return;
      hasMore = page.hasMore;
      for (const m of page.items) addMessage(m, { scroll: false });
      // Live messages may have come in while the page loaded: keep the list in time order.
      const ordered = [...messages.values()].sort((a, b) => a.data.created_at.localeCompare(b.data.created_at));
      list.replaceChildren(...ordered.map((m) => m.el));
      scrollToBottom();
      hooks.onOpened?.(conv);
    } catch (err) {
      showError(err);
    }
  }

  function update(next) {
    if (!conv || next.id !== conv.id) return;
    conv = next;
    const contact = conv.contact || {};
    title.textContent = contact.name || contact.phone || "—";
    subtitle.textContent = [contact.phone, t(`status.${conv.status}`)].filter(Boolean).join(" · ");
    clear(headAvatar, avatar(contact.name || contact.phone));
    const closed = conv.status === "closed";
    composer.classList.toggle("closed", closed);
    closedNote.hidden = !closed;
    input.placeholder = t(closed ? "chat.placeholder_reopen" : "chat.placeholder");
  }

  async function reload() {
    if (conv) await open(conv);
  }

  async function maybeLoadOlder() {
    if (!conv || !hasMore || loadingOlder || scroller.scrollTop > 60) return;
    const first = list.querySelector("[data-message-id]");
    if (!first) return;
    loadingOlder = true;
    olderEl.hidden = false;
    const mySeq = seq;
    try {
      const page = await listMessages(conv.id, { before: first.dataset.messageId, limit: PAGE });
      if (mySeq !== seq) return;
      hasMore = page.hasMore;
      const before = scroller.scrollHeight;
      const fresh = page.items.filter((m) => !messages.has(m.id)).map((m) => register(m));
      list.prepend(...fresh);
      scroller.scrollTop += scroller.scrollHeight - before; // keep the reader's place
    } catch (err) {
      showError(err);
    } finally {
      loadingOlder = false;
      olderEl.hidden = true;
    }
  }

  function register(message) {
    const el = bubble(message);
    messages.set(message.id, { data: message, el });
    const early = earlyStatus.get(message.id);
    if (early) {
      earlyStatus.delete(message.id);
      setStatus(early);
    }
    return messages.get(message.id).el;
  }

  function addMessage(message, { scroll = true } = {}) {
    if (!conv || message.conversation_id !== conv.id) return;
    const known = messages.get(message.id);
    if (known) {
      setStatus({ message_id: message.id, status: message.status, error: message.error });
      return;
    }
    const stick = nearBottom() || message.direction === "outbound";
    list.append(register(message));
    if (message.direction === "inbound") typingEl.hidden = true;
    if (scroll && stick) scrollToBottom();
  }

  function setStatus({ message_id: id, status, error: reason }) {
    const known = messages.get(id);
    if (!known) {
      earlyStatus.set(id, { message_id: id, status, error: reason });
      return;
    }
    const current = known.data.status;
    if (status !== "failed" && RANK[status] <= RANK[current]) return; // never step back
    known.data = { ...known.data, status, error: reason ?? known.data.error };
    const tick = known.el.querySelector("[data-testid=tick]");
    if (tick) tick.replaceWith(tickView(known.data));
  }

  function typing(data, on) {
    if (!conv || data.conversation_id !== conv.id || data.user_id === me.id) return;
    clearTimeout(typingTimer);
    typingEl.hidden = !on;
    if (on) typingTimer = setTimeout(() => (typingEl.hidden = true), TYPING_SHOWN_MS);
  }

  function onKey(event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  }

  function onTypingInput() {
    if (!conv) return;
    const now = Date.now();
    if (now - sentTypingAt > TYPING_SEND_EVERY_MS) {
      sentTypingAt = now;
      realtime.send({ type: "typing_start", conversation_id: conv.id });
    }
    clearTimeout(idleTimer);
    idleTimer = setTimeout(stopTyping, TYPING_IDLE_MS);
  }

  function stopTyping() {
    clearTimeout(idleTimer);
    if (conv && sentTypingAt) realtime.send({ type: "typing_stop", conversation_id: conv.id });
    sentTypingAt = 0;
  }

  async function send() {
    const text = input.value.trim();
    if (!conv || !text) return;
    const from = conv;
    input.value = "";
    error.hidden = true;
    notice.hidden = true;
    stopTyping();
    try {
      const message = await post(conversationPath(from.id, "/messages"), { content: text, message_type: "text" });
      addMessage(message);
      // The server decides where a message to a closed conversation goes (reopened, or the
      // contact's current conversation): the inbox follows it there.
      hooks.onSent?.(message, { wasClosed: from.status === "closed", fromId: from.id });
    } catch (err) {
      input.value = text;
      showError(err.code === "FORBIDDEN" ? new Error(t("chat.forbidden")) : err);
    }
  }

  function showError(err) {
    error.textContent = err?.message || t("error.generic");
    error.hidden = false;
  }

  function showNotice(text) {
    notice.textContent = text;
    notice.hidden = false;
  }

  return {
    open,
    update,
    reload,
    addMessage,
    setStatus,
    typing,
    showNotice,
    destroy() {
      stopTyping();
      clearTimeout(typingTimer);
      seq += 1;
    },
  };
}

function bubble(message) {
  const outbound = message.direction === "outbound";
  const content = message.content || {};
  return h(
    "div",
    { class: `msg-row ${outbound ? "out" : "in"}`, testid: "message", "data-message-id": message.id, "data-direction": message.direction },
    h(
      "div",
      { class: "bubble" },
      mediaView(message),
      (content.text || content.caption) && h("div", { class: "msg-text", testid: "message-text" }, content.text || content.caption),
      h("div", { class: "msg-meta" }, h("span", { class: "msg-time" }, formatClock(message.created_at)), outbound && tickView(message)),
    ),
  );
}

function tickView(message) {
  const status = message.status in TICKS ? message.status : "pending";
  const label = t(`tick.${status}`);
  return h(
    "span",
    { class: `tick t-${status}`, testid: "tick", "data-status": status, title: status === "failed" && message.error ? `${label}: ${message.error}` : label },
    TICKS[status],
  );
}

function mediaView(message) {
  const content = message.content || {};
  if (message.message_type === "text" || !content.media_url) return null;
  const isImage = message.message_type === "image" || (content.mimetype || "").startsWith("image/");
  if (isImage) {
    const img = h("img", { class: "msg-media", alt: content.caption || content.filename || "image", testid: "message-image" });
    mediaUrl(content.media_url).then((url) => (img.src = url)).catch(() => img.replaceWith(fileLink(content, message)));
    return img;
  }
  return fileLink(content, message);
}

function fileLink(content, message) {
  return h(
    "a",
    {
      class: "msg-file",
      href: "#",
      testid: "message-file",
      onclick: async (event) => {
        event.preventDefault();
        try {
          await downloadMedia(content.media_url, content.filename);
        } catch (err) {
          console.error("media download failed", err);
        }
      },
    },
    `${content.filename || `${message.message_type} · ${t("chat.open_file")}`}`,
  );
}
