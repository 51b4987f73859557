// Tiny DOM helpers. Data is only ever put into the page as text (textContent), never as HTML.

/**
 * h("div", {class: "x", testid: "y", onclick: fn}, child, "text", [more])
 * Strings become text nodes; null/false children are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "testid") el.dataset.testid = value;
    else if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key in el && typeof value !== "string") el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function debounce(fn, ms) {
  let timer;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

/** A tiny event emitter: on(type, fn) returns an unsubscribe function. */
export class Emitter {
  #handlers = new Map();

  on(type, fn) {
    if (!this.#handlers.has(type)) this.#handlers.set(type, new Set());
    this.#handlers.get(type).add(fn);
    return () => this.#handlers.get(type)?.delete(fn);
  }

  emit(type, payload) {
    for (const fn of [...(this.#handlers.get(type) ?? [])]) {
      try {
        fn(payload);
      } catch (err) {
        console.error(`handler for ${type} failed`, err);
      }
    }
  }
}

const AVATAR_COLORS = ["#25d366", "#34b7f1", "#ff8a65", "#ba68c8", "#4db6ac", "#f06292", "#7986cb", "#ffb74d"];

export function avatar(label) {
  const text = String(label || "?").trim();
  const initials = text.replace(/^\+/, "").split(/\s+/).slice(0, 2).map((w) => w[0]).join("").toUpperCase();
  let hash = 0;
  for (const ch of text) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  const el = h("span", { class: "avatar" }, initials || "?");
  el.style.background = AVATAR_COLORS[hash % AVATAR_COLORS.length];
  return el;
}
