// One real-time connection (dialect B, /api/v1/conversations/ws) shared by every page.
// It resumes from the highest event id seen after any disconnection, with backoff, and reports
// its state honestly: "connecting", "online" or "offline".

import { accessToken, refresh } from "./api.js";
import { Emitter } from "./dom.js";

const PING_EVERY_MS = 30_000;
const BACKOFF_MS = [500, 1_000, 2_000, 4_000, 8_000, 10_000];

class Realtime extends Emitter {
  state = "offline";
  lastEventId = null;
  #ws = null;
  #attempt = 0;
  #retryTimer = null;
  #pingTimer = null;
  #wanted = false;
  #awaitingLive = false;
  #startedFrom = null;

  start() {
    if (this.#wanted) return;
    this.#wanted = true;
    this.#open();
  }

  stop() {
    this.#wanted = false;
    clearTimeout(this.#retryTimer);
    clearInterval(this.#pingTimer);
    this.#ws?.close(1000, "logout");
    this.#ws = null;
    this.lastEventId = null;
    this.#setState("offline");
  }

  /** Skip the backoff wait (the browser says the network is back). */
  reconnectNow() {
    if (!this.#wanted || this.#ws) return;
    clearTimeout(this.#retryTimer);
    this.#open();
  }

  send(frame) {
    if (this.#ws?.readyState === WebSocket.OPEN) this.#ws.send(JSON.stringify(frame));
  }

  #setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.emit("state", state);
  }

  #open() {
    const token = accessToken();
    if (!this.#wanted || !token) return;
    this.#setState("connecting");
    const proto = location.protocol === "https:" ? "wss" : "ws";
    this.#startedFrom = this.lastEventId;
    const query = this.lastEventId === null ? "" : `?last_event_id=${this.lastEventId}`;
    const ws = new WebSocket(`${proto}://${location.host}/api/v1/conversations/ws${query}`);
    this.#ws = ws;
    ws.addEventListener("open", () => ws.send(JSON.stringify({ type: "auth", token })));
    ws.addEventListener("message", (event) => this.#onFrame(event.data));
    ws.addEventListener("close", (event) => this.#onClose(ws, event));
  }

  #onFrame(raw) {
    let frame;
    try {
      frame = JSON.parse(raw);
    } catch {
      return;
    }
    if (typeof frame.event_id === "number") {
      this.lastEventId = Math.max(this.lastEventId ?? 0, frame.event_id);
    }
    if (frame.type === "connected") {
      // The server subscribes us after its greeting; its answer to a ping comes after that (and
      // after any replay), so the first pong is the moment this connection is really live.
      this.#attempt = 0;
      this.#awaitingLive = true;
      this.send({ type: "ping" });
      clearInterval(this.#pingTimer);
      this.#pingTimer = setInterval(() => this.send({ type: "ping" }), PING_EVERY_MS);
    } else if (frame.type === "pong" && this.#awaitingLive) {
      this.#awaitingLive = false;
      this.#setState("online");
      // Without an event id to resume from, events between the pages' last fetch and now are
      // unknown: tell them to refetch.
      if (this.#startedFrom === null) this.emit("resync_required", { reason: "fresh" });
    }
    this.emit(frame.type, frame.data ?? frame);
    this.emit("*", frame);
  }

  async #onClose(ws, event) {
    if (ws !== this.#ws) return;
    clearInterval(this.#pingTimer);
    this.#ws = null;
    if (!this.#wanted) return;
    this.#setState("offline");
    if (event.code === 4401) {
      // The token expired or was refused: get a new one, then come back at once.
      try {
        await refresh();
      } catch {
        this.emit("unauthorized");
        return;
      }
      this.#open();
      return;
    }
    const delay = BACKOFF_MS[Math.min(this.#attempt, BACKOFF_MS.length - 1)];
    this.#attempt += 1;
    this.#retryTimer = setTimeout(() => this.#open(), delay * (0.8 + Math.random() * 0.4));
  }
}

export const realtime = new Realtime();

// Come back quickly when the network does.
window.addEventListener("online", () => realtime.reconnectNow());
