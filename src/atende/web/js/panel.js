// The side panel: the contact / lead and quick actions (assign, status, close).

import { ApiError, conversationPath, currentUser, get, isAdmin, post } from "./api.js";
import { avatar, clear, h } from "./dom.js";
import { t } from "./i18n.js";

const STATUSES = ["active", "waiting", "assigned", "closed"];

export function createPanel(root, hooks) {
  const me = currentUser();
  let users = [];
  let conv = null;
  const usersReady = get("/api/v1/users")
    .then((list) => (users = list))
    .catch(() => (users = []));

  const error = h("p", { class: "send-error small", role: "alert", testid: "panel-error", hidden: true });

  async function act(tail, body) {
    error.hidden = true;
    try {
      const result = await post(conversationPath(conv.id, tail), body);
      const updated = result?.conversation ?? (result?.id ? result : null);
      if (updated?.contact) hooks.onChange(updated);
    } catch (err) {
      error.textContent = err instanceof ApiError ? err.message : t("error.generic");
      error.hidden = false;
    }
  }

  function userName(id) {
    if (!id) return t("panel.nobody");
    if (id === me.id) return me.name || me.email;
    const user = users.find((u) => u.id === id);
    return user ? user.name || user.email : id.slice(0, 8);
  }

  function field(label, value, testid) {
    return h("div", { class: "field" }, h("dt", {}, label), h("dd", { testid }, value ?? "—"));
  }

  function render() {
    if (!conv) {
      clear(root);
      return;
    }
    const contact = conv.contact || {};
    const statusSelect = h(
      "select",
      { testid: "status-select", onchange: () => act("/status", { status: statusSelect.value }) },
      STATUSES.map((s) => h("option", { value: s, selected: s === conv.status }, t(`status.${s}`))),
    );
    let picker = null;
    if (isAdmin()) {
      const select = h(
        "select",
        { testid: "assignee-select" },
        users.filter((u) => u.is_active !== false).map((u) => h("option", { value: u.id, selected: u.id === conv.assignee_id }, u.name || u.email)),
      );
      picker = h("div", { class: "row" }, select, h("button", { class: "btn small", testid: "assign-button", onclick: () => act("/assign", { user_id: select.value }) }, t("panel.assign")));
    }
    clear(
      root,
      h(
        "div",
        { class: "panel", testid: "side-panel" },
        h("div", { class: "panel-hero" }, avatar(contact.name || contact.phone), h("h3", { testid: "panel-name" }, contact.name || "—"), h("p", { class: "muted" }, contact.phone || "")),
        h("section", {}, h("h4", {}, t("panel.contact")),
          h("dl", {},
            field(t("panel.phone"), contact.phone, "panel-phone"),
            field(t("panel.email"), contact.email, "panel-email"),
            field(t("panel.source"), contact.source, "panel-source"),
            field(t("panel.lead_status"), contact.lead_status, "panel-lead-status"),
            field(t("panel.score"), contact.score === undefined ? null : String(contact.score), "panel-score"))),
        h("section", {}, h("h4", {}, t("panel.conversation")),
          h("dl", {},
            field(t("panel.assignee"), userName(conv.assignee_id), "panel-assignee"),
            h("div", { class: "field" }, h("dt", {}, t("panel.status")), h("dd", {}, statusSelect))),
          h("div", { class: "actions" },
            conv.assignee_id !== me.id && h("button", { class: "btn small primary", testid: "assign-me", onclick: () => act("/assign", { user_id: me.id }) }, t("panel.assign_me")),
            picker,
            conv.assignee_id && h("button", { class: "btn small ghost", testid: "unassign", onclick: () => act("/unassign") }, t("panel.unassign")),
            conv.status === "closed"
              ? h("button", { class: "btn small", testid: "reopen", onclick: () => act("/status", { status: "active" }) }, t("panel.reopen"))
              : h("button", { class: "btn small danger", testid: "close-conversation", onclick: () => act("/status", { status: "closed" }) }, t("panel.close")),
          ),
          error),
      ),
    );
  }

  return {
    show(next) {
      conv = next;
      render();
      if (next) usersReady.then(() => conv === next && render());
    },
  };
}
