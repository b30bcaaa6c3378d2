// Live refresh: server-sent events from the console's WatchActions stream; the page's
// live region is re-rendered by the server and swapped in, with focus kept in place.

import { sessionExpired, workspace } from "./http.js";

const BANNER_DELAY_MS = 2000;
let timer = null;
let running = false;
let again = false;

export async function refresh() {
  const region = document.getElementById("live-region");
  if (!region || !region.dataset.refresh) return;
  if (running) {
    again = true;
    return;
  }
  running = true;
  try {
    const url = new URL(location.href);
    url.searchParams.set("fragment", "1");
    const res = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (res.redirected && new URL(res.url).pathname === "/signin") return sessionExpired();
    if (!res.ok) return;
    const html = await res.text();
    const key = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.key : "";
    region.innerHTML = html; // our own server's template output: every value escaped there
    if (key) {
      const match = region.querySelector(`[data-key="${CSS.escape(key)}"]`);
      if (match) match.focus();
    }
    document.dispatchEvent(new CustomEvent("fleetward:refreshed"));
  } finally {
    running = false;
    if (again) {
      again = false;
      schedule(0);
    }
  }
}

export function schedule(delay = 100) {
  clearTimeout(timer);
  timer = setTimeout(refresh, delay);
}

function relevant(message) {
  const region = document.getElementById("live-region");
  if (!region) return false;
  if (region.dataset.refresh === "action") {
    const id = region.dataset.actionId;
    const a = message.action;
    return a.action_id === id || a.rollback_of_action_id === id;
  }
  return Boolean(region.dataset.refresh);
}

export function startLive() {
  const ws = workspace();
  if (!ws || !document.getElementById("live-region")) return;
  const banner = document.getElementById("live-banner");
  let bannerTimer = null;
  let live = false;
  const down = () => {
    live = false;
    document.body.dataset.live = "no";
    clearTimeout(bannerTimer);
    bannerTimer = setTimeout(() => {
      if (!live) banner.hidden = false;
    }, BANNER_DELAY_MS);
  };
  const up = () => {
    const wasLive = live;
    live = true;
    clearTimeout(bannerTimer);
    banner.hidden = true;
    document.body.dataset.live = "yes";
    if (!wasLive) schedule(0); // catch up on whatever happened while not live
  };
  let source = null;
  let retryMs = 3000;
  let retryTimer = null;
  // Refused outright (401, or 429: too many live pages): one page fetch finds out whether
  // the session is gone; then retry, backing off up to a minute.
  const retryLater = () => {
    down();
    if (retryMs === 3000) schedule(0);
    retryTimer = setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, 60000);
  };
  const connect = () => {
    clearTimeout(retryTimer);
    const es = new EventSource(`/w/${ws}/live`);
    source = es;
    es.addEventListener("status", (e) => {
      retryMs = 3000; // admitted: a later refusal starts its back-off afresh
      return JSON.parse(e.data).live ? up() : down();
    });
    es.addEventListener("action", (e) => {
      const message = JSON.parse(e.data);
      document.dispatchEvent(new CustomEvent("fleetward:action", { detail: message }));
      if (relevant(message)) schedule();
    });
    es.addEventListener("auth", () => {
      es.close();
      sessionExpired();
    });
    es.addEventListener("refused", () => {
      es.close();
      retryLater();
    });
    es.onerror = () => {
      if (es.readyState === EventSource.CLOSED) retryLater();
      else down(); // the browser reconnects by itself
    };
  };
  // A hidden tab gives its connection back (a browser holds six per host over HTTP/1.1,
  // and every live page holds one); it reconnects and catches up when shown again.
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) {
      clearTimeout(retryTimer);
      if (source) source.close();
      source = null;
      live = false;
      document.body.dataset.live = "no";
    } else if (!source) {
      connect();
    }
  });
  if (!document.hidden) connect();
}
