// The fotahost cloud's web console: devices, firmware, rollout and what
// happens, live. Plain script, no framework: it reads the admin API with
// the token the user gave, and long-polls /admin/events to know when to
// read again.
//
// Every value a device sent (ids, statuses, data points, peers) is
// hostile: it reaches the page through textContent only. The server's
// Content-Security-Policy (trusted types 'none') makes any assignment of
// markup to an element throw, so a slip shows at once.
"use strict";

(function () {
  const TOKEN_KEY = "fotahost-cloud-token";
  const MAX_ACTIVITY = 300;   // lines kept in the activity feed
  const MAX_POINT_ROWS = 300; // rows in a device's data point table
  const STATUS_CHANNEL = "fota_status"; // where devices report their updates
  const STATUS_MS = 300;      // a status shows at least this long when others wait
  const RETRY_MS = 2000;      // after a failed poll
  const RELOAD_GAP_MS = 500;  // between two reloads of one kind

  const $ = (sel, root) => (root || document).querySelector(sel);

  const state = {
    token: null,
    session: 0,          // bumped at every login and logout: old loops stop
    abort: new AbortController(), // ends the session's requests under way
    seq: 0,              // the last event read
    loadedSeq: 0,        // events up to this one are in what login read
    devices: [],
    firmwares: [],
    rollout: null,
    hasRollout: false,   // whether the cloud has one (GET /admin/devices says)
    device: null,        // the id of the device page shown, or null
    pushing: new Set(),  // ids of the devices a push is under way to
    pushingAll: new Set(), // versions a "Push to all" is under way for
    uploading: false,
    devicesSeq: 0,       // the devices read include every event up to this one
  };

  // ------------------------------------------------------------ helpers

  // An element with text (never markup) and attributes.
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null) e.setAttribute(k, v);
    }
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function pad(n) { return String(n).padStart(2, "0"); }

  // "HH:MM:SS" of an epoch time in seconds; "" for none.
  function clock(seconds) {
    if (typeof seconds !== "number" || !isFinite(seconds)) return "";
    const d = new Date(seconds * 1000);
    return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }

  function fullDate(seconds) {
    return typeof seconds === "number" ? new Date(seconds * 1000).toLocaleString() : "";
  }

  // A data point's value as text: "value", else its JSON.
  function pointValue(p) {
    const v = p && p.values;
    if (v && v.value !== undefined) return String(v.value);
    return JSON.stringify(v);
  }

  function setText(node, text, title) {
    const t = text === undefined || text === null ? "" : String(text);
    if (node.textContent !== t) node.textContent = t;
    if (title !== undefined) node.title = title;
  }

  // A button whose action is under way stays focusable: disabling it
  // would throw the keyboard focus to the page's top, and Enter pressed
  // again would go nowhere the user expects. aria-disabled tells it is
  // busy; the action itself refuses to run twice.
  function setBusy(button, busy) {
    if (busy) button.setAttribute("aria-disabled", "true");
    else button.removeAttribute("aria-disabled");
  }

  let noticeTimer = null;
  function notice(text, isError) {
    const n = $("#notice");
    n.textContent = text;
    n.classList.toggle("error", !!isError);
    n.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { n.hidden = true; }, 8000);
  }

  // ------------------------------------------------------------ the admin API

  class Unauthorized extends Error {}
  class Stale extends Error {} // the session it was made for is over

  // A call to the admin API: the decoded answer; throws the server's
  // message on an error status, Unauthorized on 401 (the login shows),
  // Stale when the user logged out or in meanwhile.
  async function api(method, path, body) {
    const session = state.session;
    try {
      return await call(method, path, body);
    } catch (err) {
      if (session !== state.session && !(err instanceof Unauthorized)) throw new Stale("stale");
      throw err;
    }
  }

  async function call(method, path, body) {
    const headers = { Authorization: "Bearer " + state.token };
    const init = { method, headers, cache: "no-store", credentials: "omit", signal: state.abort.signal };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const session = state.session;
    const res = await fetch(path, init);
    let doc = null;
    try { doc = await res.json(); } catch (e) { doc = null; }
    const message = (doc && typeof doc.message === "string" && doc.message) || res.status + " " + res.statusText;
    if (session !== state.session) throw new Stale("stale");
    if (res.status === 401) {
      showLogin(message);
      throw new Unauthorized(message);
    }
    if (!res.ok) {
      const err = new Error(message);
      err.status = res.status;
      throw err;
    }
    return doc;
  }

  // Reloads run one at a time per kind, the last asked for winning: a
  // burst of events costs one fetch, and a slow answer never overwrites
  // a newer one. A kind starts at most once every RELOAD_GAP_MS, so a
  // flood of events costs a fetch now and then, not one after another.
  // Each session has its own (newSession): one asked for just before a
  // login or logout is neither lost nor run for the old session.
  let reloads = new Map();
  function reload(kind, fn) {
    let r = reloads.get(kind);
    if (!r) {
      r = { running: false, fn: null, last: -Infinity, owner: reloads };
      reloads.set(kind, r);
    }
    r.fn = fn; // the latest asked for
    if (!r.running) runReload(r);
  }

  function runReload(r) {
    r.running = true;
    const gap = r.last + RELOAD_GAP_MS - performance.now();
    if (gap > 0) {
      setTimeout(() => runReload(r), gap);
      return;
    }
    if (r.owner !== reloads) return; // the session ended meanwhile
    const fn = r.fn;
    r.fn = null;
    r.last = performance.now();
    Promise.resolve().then(fn).catch(report).finally(() => {
      r.running = false;
      if (r.fn && r.owner === reloads) runReload(r);
    });
  }

  function report(err) {
    if (!(err instanceof Unauthorized || err instanceof Stale)) notice(err.message || String(err), true);
  }

  // ------------------------------------------------------------ login

  // A new session: the old one's requests (a long poll waiting) end.
  function newSession() {
    state.session++;
    state.abort.abort();
    state.abort = new AbortController();
    reloads = new Map();
    statusQueues = new Map();
  }

  function showLogin(message) {
    state.token = null;
    newSession();
    sessionStorage.removeItem(TOKEN_KEY);
    $("#notice").hidden = true;
    $("#app").hidden = true;
    $("#logout").hidden = true;
    $("#live").hidden = true;
    $("#login").hidden = false;
    setText($("#login-error"), message || "");
    $("#login input[name=token]").focus();
  }

  function showApp() {
    $("#login").hidden = true;
    $("#app").hidden = false;
    $("#logout").hidden = false;
    $("#live").hidden = false;
  }

  // A #token=... fragment is taken once and leaves the address bar (and
  // the history) at once.
  function tokenFromFragment() {
    const m = location.hash.match(/^#token=([^&]*)$/);
    if (!m) return null;
    history.replaceState(null, "", location.pathname + location.search);
    try { return decodeURIComponent(m[1]); } catch (e) { return m[1]; }
  }

  // Only a 401 sends the user back to the form. Another failure (the
  // cloud restarting, a proxy's 502, the network gone) keeps the token:
  // the console says so and tries again until the session ends.
  async function login(token) {
    state.token = token;
    newSession();
    const session = state.session;
    sessionStorage.setItem(TOKEN_KEY, token); // (a 401 takes it out again)
    let ring;
    while (!ring) {
      try {
        ring = await loadSession();
      } catch (err) {
        if (err instanceof Unauthorized || err instanceof Stale || session !== state.session) return;
        showApp();
        setLive(false);
        notice("The cloud does not answer (" + (err.message || String(err)) + "): trying again.", true);
        await new Promise((ok) => setTimeout(ok, RETRY_MS));
        if (session !== state.session) return;
      }
    }
    $("#notice").hidden = true;
    $("#login-error").textContent = "";
    showApp();
    setLive(true); // the cloud answered; the poll says when it stops
    route();
    clearActivity();
    addActivity(ring.events);
    poll(session);
  }

  // What the cloud holds, and where its events take over. The ring is
  // read first (the recent activity, and its last seq): every event up to
  // that seq is in what loadAll() reads after it, and each later one is
  // applied when the poll brings it. A cloud that says which event its
  // /admin/devices answer includes (seq) moves that line further: the
  // events up to it change nothing either. Devices are read before the
  // rest, so that line holds for firmwares and the rollout too.
  async function loadSession() {
    state.devices = []; // (what a session's events told stays in it)
    const ring = await api("GET", "/admin/events?since=0&wait=0");
    state.seq = state.loadedSeq = seqOf(ring);
    await loadAll();
    if (typeof state.devicesSeq === "number" && state.devicesSeq > state.loadedSeq) {
      state.loadedSeq = state.devicesSeq;
    }
    return { events: Array.isArray(ring.events) ? ring.events : [] };
  }

  // An answer's seq (a number, else 0).
  function seqOf(doc) {
    return doc && typeof doc.seq === "number" && isFinite(doc.seq) ? doc.seq : 0;
  }

  // ------------------------------------------------------------ live updates

  function setLive(ok) {
    const live = $("#live");
    live.dataset.state = ok ? "online" : "offline";
    $(".dot", live).dataset.state = ok ? "online" : "offline";
    setText($(".live-text", live), ok ? "live" : "reconnecting");
  }

  // Long-polls /admin/events until the session ends.
  async function poll(session) {
    while (session === state.session) {
      try {
        const r = await api("GET", "/admin/events?since=" + state.seq + "&wait=25");
        if (session !== state.session) return;
        setLive(true);
        const events = Array.isArray(r.events) ? r.events : [];
        if (r.reset) {
          // events were lost (or the cloud restarted: its seqs too)
          clearActivity();
          state.loadedSeq = 0;
          state.devicesSeq = 0;
          for (const dev of state.devices) delete dev.liveStatus;
          statusQueues = new Map();
          reloadAll();
        }
        state.seq = seqOf(r);
        addActivity(events);
        for (const ev of events) onEvent(ev);
      } catch (err) {
        if (err instanceof Unauthorized || err instanceof Stale || session !== state.session) return;
        setLive(false);
        await new Promise((ok) => setTimeout(ok, RETRY_MS));
      }
    }
  }

  // What an event changes on the page (one login read already, none).
  function onEvent(ev) {
    if (ev.seq <= state.loadedSeq) return;
    switch (ev.type) {
      case "heartbeat":
        onHeartbeat(ev);
        return;
      case "firmware":
        reload("firmwares", loadFirmwares);
        break;
      case "rollout":
        state.hasRollout = true;
        reload("rollout", loadRollout);
        break;
      case "point":
        // the row shows only the status: other channels change nothing there
        if (ev.channel === STATUS_CHANNEL) {
          onStatus(ev);
          reload("devices", loadDevices);
        }
        break;
      default:
        reload("devices", loadDevices);
    }
    if (state.rollout && (ev.type === "point" || ev.type === "version" || ev.type === "command")) {
      reload("rollout", loadRollout);
    }
    if (state.device !== null && ev.device === state.device) reload("device", loadDevicePage);
  }

  // A heartbeat changes a time, no more: the row (and the device page)
  // take it from the event. Nothing is read again, so a device beating
  // fast costs no reloads. (A device the page does not know yet is read.)
  function onHeartbeat(ev) {
    const dev = findDevice(ev.device);
    if (!dev) return reload("devices", loadDevices);
    if (typeof ev.at === "number" && !(dev.last_heartbeat >= ev.at)) dev.last_heartbeat = ev.at;
    const tr = deviceRow(dev.id);
    if (tr) showHeartbeat(tr, dev);
    if (state.device === String(dev.id)) showDeviceHeartbeat(dev.last_heartbeat);
  }

  // A status shows in its row as it comes. Those a poll brings together
  // show one after another, STATUS_MS each, so a quick step (verifying)
  // is seen, not skipped; meanwhile the row keeps to them, and after the
  // last the devices read (the reload it asked for) show again if newer.
  let statusQueues = new Map(); // device id -> statuses waiting their turn

  function onStatus(ev) {
    const dev = findDevice(ev.device);
    if (!dev || !(ev.seq > state.devicesSeq)) return; // the row has it already
    const id = String(dev.id);
    const st = { seq: ev.seq, text: String(ev.value) + (ev.truncated ? "…" : ""), at: ev.at };
    const queue = statusQueues.get(id);
    if (queue) return queue.push(st);
    statusQueues.set(id, []);
    showLiveStatus(id, st, statusQueues);
  }

  function showLiveStatus(id, st, queues) {
    const dev = findDevice(id);
    if (dev) dev.liveStatus = st;
    refreshStatus(id);
    setTimeout(() => {
      const queue = queues.get(id);
      if (!queue || queues !== statusQueues) return; // a new session
      if (queue.length) return showLiveStatus(id, queue.shift(), queues);
      queues.delete(id);
      refreshStatus(id);
    }, STATUS_MS);
  }

  function refreshStatus(id) {
    const dev = findDevice(id);
    const tr = dev && deviceRow(id);
    if (tr) showStatus(tr, dev);
  }

  // One line of the feed: "HH:MM:SS device what".
  function activityText(ev) {
    const who = ev.device ? ev.device + " " : "";
    let what;
    switch (ev.type) {
      case "device": what = ev.connected ? "connected" : "disconnected"; break;
      case "heartbeat": what = "heartbeat"; break;
      case "point": what = ev.channel + " " + ev.value + (ev.truncated ? "…" : ""); break;
      case "version": what = "reports version " + ev.version; break;
      case "firmware": what = "firmware " + ev.version + " registered"; break;
      case "command":
        what = ev.raw ? "raw bytes sent" : ev.version !== undefined ? ev.channel + " " + ev.version + " pushed"
          : ev.channel + " sent";
        break;
      case "rollout": what = "rollout of " + ev.firmware + " " + ev.state + (ev.reason ? ": " + ev.reason : ""); break;
      default: what = String(ev.type);
    }
    return clock(ev.at) + " " + who + what;
  }

  function activityLine(ev) {
    const li = el("li", { "data-type": ev.type, "data-seq": ev.seq }, activityText(ev));
    if (ev.type === "device") li.dataset.connected = ev.connected ? "yes" : "no";
    if (ev.type === "device" && ev.peer) li.title = ev.transport + " " + ev.peer;
    return li;
  }

  // The feed's lines, heartbeats kept apart (at most MAX_ACTIVITY of
  // each): heartbeats show only when asked for, and a flood of them never
  // pushes the other lines out.
  let feedLines = { events: [], beats: [] };

  function keepLine(list, li) {
    list.push(li);
    if (list.length > MAX_ACTIVITY) list.splice(0, list.length - MAX_ACTIVITY);
  }

  function showingHeartbeats() { return $("#show-heartbeats").checked; }

  // Adds a poll answer's events to the feed in one go: the feed's scroll
  // is read once before and set once after, so a thousand events cost
  // one layout, not one each.
  function addActivity(events) {
    const shown = [];
    for (const ev of events) {
      const li = activityLine(ev);
      const beat = ev.type === "heartbeat";
      keepLine(beat ? feedLines.beats : feedLines.events, li);
      if (!beat || showingHeartbeats()) shown.push(li);
    }
    if (!shown.length) return;
    const feed = $("#activity");
    const atEnd = feed.scrollTop + feed.clientHeight >= feed.scrollHeight - 4;
    const lines = document.createDocumentFragment();
    lines.append(...shown.slice(-MAX_ACTIVITY));
    feed.append(lines);
    for (let extra = feed.childElementCount - MAX_ACTIVITY; extra > 0; extra--) feed.firstElementChild.remove();
    if (atEnd) feed.scrollTop = feed.scrollHeight;
  }

  // The feed again from the lines kept (heartbeats shown or not), in the
  // order the events came.
  function redrawActivity() {
    let lines = feedLines.events;
    if (showingHeartbeats()) {
      lines = lines.concat(feedLines.beats).sort((a, b) => Number(a.dataset.seq) - Number(b.dataset.seq));
    }
    const feed = $("#activity");
    feed.replaceChildren(...lines.slice(-MAX_ACTIVITY));
    feed.scrollTop = feed.scrollHeight;
  }

  function clearActivity() {
    feedLines = { events: [], beats: [] };
    $("#activity").replaceChildren();
  }

  // ------------------------------------------------------------ loading

  async function loadAll() {
    await loadDevices();
    await Promise.all([loadFirmwares(), loadRollout()]);
  }

  function reloadAll() {
    reload("devices", loadDevices);
    reload("firmwares", loadFirmwares);
    reload("rollout", () => loadDevices().then(loadRollout));
    if (state.device !== null) reload("device", loadDevicePage);
  }

  async function loadDevices() {
    const asked = state.seq; // the answer includes every event up to this one
    const doc = await api("GET", "/admin/devices");
    state.devicesSeq = typeof doc.seq === "number" ? doc.seq : asked;
    const before = state.devices;
    state.devices = Array.isArray(doc.devices) ? doc.devices : [];
    for (const dev of state.devices) keepNewer(dev, before.find((d) => String(d.id) === String(dev.id)));
    state.hasRollout = doc.rollout === true;
    renderDevices();
  }

  // What the events told of `old` (the same device, read before) that a
  // new answer may predate: its last heartbeat, its last status event
  // (shownStatus weighs it).
  function keepNewer(dev, old) {
    if (!old) return;
    if (old.liveStatus) dev.liveStatus = old.liveStatus;
    if (typeof old.last_heartbeat === "number" && !(dev.last_heartbeat >= old.last_heartbeat)) {
      dev.last_heartbeat = old.last_heartbeat;
    }
  }

  async function loadFirmwares() {
    const doc = await api("GET", "/admin/firmwares");
    state.firmwares = Array.isArray(doc.firmwares) ? doc.firmwares : [];
    renderFirmwares();
    renderDevices();
  }

  // (asked only when there is one: a 404 is an error in the browser's console)
  async function loadRollout() {
    if (!state.hasRollout) {
      state.rollout = null;
      return renderRollout();
    }
    try {
      state.rollout = await api("GET", "/admin/rollout");
    } catch (err) {
      if (err.status !== 404) throw err;
      state.rollout = null;
    }
    renderRollout();
  }

  // ------------------------------------------------------------ rows

  // Brings `tbody`'s rows in line with `items`, keyed by `attr`: a row is
  // made once (make) and updated in place (update), so a select the user
  // is in keeps its choice and its focus.
  function syncRows(tbody, attr, items, key, make, update) {
    const rows = new Map();
    for (const tr of tbody.rows) rows.set(tr.getAttribute(attr), tr);
    let before = tbody.firstElementChild;
    for (const item of items) {
      const k = key(item);
      let tr = rows.get(k);
      if (!tr) {
        tr = make(item);
        tr.setAttribute(attr, k);
      }
      rows.delete(k);
      if (tr !== before) tbody.insertBefore(tr, before);
      else before = before.nextElementSibling;
      update(tr, item);
    }
    for (const tr of rows.values()) tr.remove();
  }

  // Versions, newest registered first.
  function versionsNewestFirst() {
    return state.firmwares.map((f) => String(f.version)).reverse();
  }

  function fillVersions(select) {
    const versions = versionsNewestFirst();
    const now = Array.from(select.options, (o) => o.value);
    if (now.join("\n") === versions.join("\n")) return;
    const chosen = select.value;
    select.replaceChildren(...versions.map((v) => el("option", { value: v }, v)));
    if (versions.includes(chosen)) select.value = chosen;
  }

  // ------------------------------------------------------------ devices

  function lastStatus(dev) {
    const list = dev.datapoints && dev.datapoints[STATUS_CHANNEL];
    return Array.isArray(list) && list.length ? list[list.length - 1] : null;
  }

  // The status a row shows: from an event while some wait their turn, or
  // newer than the devices read; else the last one read.
  // @return { text, at (epoch s) } | null
  function shownStatus(dev) {
    const live = dev.liveStatus;
    if (live && (live.seq > state.devicesSeq || statusQueues.has(String(dev.id)))) return live;
    const p = lastStatus(dev);
    return p ? { text: pointValue(p), at: p.received / 1000 } : null;
  }

  function showStatus(tr, dev) {
    const st = shownStatus(dev);
    setText($("td.status", tr), st ? st.text : "");
    const at = st ? st.at : null;
    setText($("td.status-at", tr), clock(at), fullDate(at));
  }

  function findDevice(id) {
    return state.devices.find((d) => String(d.id) === String(id));
  }

  function deviceRow(id) {
    for (const tr of $("#devices tbody").rows) {
      if (tr.getAttribute("data-device") === String(id)) return tr;
    }
    return null;
  }

  function showHeartbeat(tr, dev) {
    setText($("td.heartbeat", tr), clock(dev.last_heartbeat), fullDate(dev.last_heartbeat));
  }

  function makeDeviceRow(dev) {
    const tr = el("tr");
    const idCell = el("td", { class: "id" });
    const dot = el("span", { class: "dot", "data-state": "offline" });
    const link = el("a", { href: "#device/" + encodeURIComponent(dev.id) }, dev.id);
    idCell.append(dot, link);
    const push = el("td", { class: "push-cell" });
    const select = el("select", { class: "push-version", "aria-label": "Version to push to " + dev.id });
    const button = el("button", { type: "button", class: "push primary" }, "Push");
    button.addEventListener("click", () => pushTo(String(dev.id), select.value));
    const group = el("div", { class: "push-group" });
    group.append(select, button);
    push.append(group);
    tr.append(idCell, el("td", { class: "peer" }), el("td", { class: "heartbeat" }), el("td", { class: "version" }),
      el("td", { class: "status" }), el("td", { class: "status-at" }), push);
    return tr;
  }

  function updateDeviceRow(tr, dev) {
    const online = dev.connected === true;
    const dot = $(".dot", tr);
    dot.dataset.state = online ? "online" : "offline";
    dot.title = online ? "online (" + dev.transport + ")" : "offline";
    setText($("td.peer", tr), online ? dev.peer : "");
    showHeartbeat(tr, dev);
    setText($("td.version", tr), dev.version);
    showStatus(tr, dev);
    const select = $("select.push-version", tr);
    fillVersions(select);
    const button = $("button.push", tr);
    button.disabled = select.options.length === 0;
    setBusy(button, state.pushing.has(String(dev.id)));
  }

  // Marks a device's push under way (or over), on its row if shown.
  function markPushing(id, on) {
    if (on) state.pushing.add(id);
    else state.pushing.delete(id);
    const tr = deviceRow(id);
    if (tr) setBusy($("button.push", tr), on);
  }

  function renderDevices() {
    const tbody = $("#devices tbody");
    syncRows(tbody, "data-device", state.devices, (d) => String(d.id), makeDeviceRow, updateDeviceRow);
    $("#devices-empty").hidden = state.devices.length > 0;
  }

  async function pushTo(id, version) {
    if (!version) return;
    if (state.pushing.has(id)) return; // one push at a time a device
    markPushing(id, true);
    try {
      const r = await api("POST", "/admin/devices/" + encodeURIComponent(id) + "/fota", { version });
      const signed = r.firmware && r.firmware.signed ? "signed" : "unsigned";
      notice(version + " pushed to " + id + " (" + signed + "): " + r.message);
    } catch (err) {
      report(err);
    } finally {
      markPushing(id, false);
    }
  }

  // ------------------------------------------------------------ firmware

  function makeFirmwareRow(fw) {
    const tr = el("tr");
    const actions = el("td", { class: "actions" });
    const button = el("button", { type: "button", class: "push-all" }, "Push to all");
    button.addEventListener("click", () => pushToAll(String(fw.version)));
    actions.append(button);
    tr.append(el("td", { class: "version" }), el("td", { class: "size" }), el("td", { class: "md5" }),
      el("td", { class: "signed" }), el("td", { class: "key-id" }), actions);
    return tr;
  }

  function updateFirmwareRow(tr, fw) {
    setText($("td.version", tr), fw.version, fw.name);
    setText($("td.size", tr), typeof fw.size === "number" ? fw.size + " bytes" : "");
    setText($("td.md5", tr), fw.md5);
    const signed = $("td.signed", tr);
    setText(signed, fw.signed ? "signed" : "unsigned", fw.trusted_comment || "");
    signed.dataset.signed = fw.signed ? "yes" : "no";
    setText($("td.key-id", tr), fw.key_id);
    setBusy($("button.push-all", tr), state.pushingAll.has(String(fw.version)));
  }

  function firmwareRow(version) {
    for (const tr of $("#firmwares tbody").rows) {
      if (tr.getAttribute("data-firmware") === version) return tr;
    }
    return null;
  }

  function markPushingAll(version, on) {
    if (on) state.pushingAll.add(version);
    else state.pushingAll.delete(version);
    const tr = firmwareRow(version);
    if (tr) setBusy($("button.push-all", tr), on);
  }

  function renderFirmwares() {
    const tbody = $("#firmwares tbody");
    const list = state.firmwares.slice().reverse();
    syncRows(tbody, "data-firmware", list, (f) => String(f.version), makeFirmwareRow, updateFirmwareRow);
    $("#firmwares-empty").hidden = list.length > 0;
    fillVersions($("#rollout-start select[name=firmware]"));
  }

  // Pushes `version` to every device in turn; one already being pushed
  // to is left out (and named).
  async function pushToAll(version) {
    if (state.pushingAll.has(version)) return;
    markPushingAll(version, true);
    const failed = [];
    let sent = 0;
    const devices = state.devices.map((d) => String(d.id));
    try {
      for (const id of devices) {
        if (state.pushing.has(id)) {
          failed.push(id + ": a push to it is under way");
          continue;
        }
        markPushing(id, true);
        try {
          await api("POST", "/admin/devices/" + encodeURIComponent(id) + "/fota", { version });
          sent++;
        } catch (err) {
          if (err instanceof Unauthorized || err instanceof Stale) return;
          failed.push(id + ": " + err.message);
        } finally {
          markPushing(id, false);
        }
      }
      notice(version + " pushed to " + sent + " of " + devices.length + " devices"
        + (failed.length ? "; not to " + failed.join("; ") : ""), failed.length > 0);
    } finally {
      markPushingAll(version, false);
    }
  }

  async function upload(event) {
    event.preventDefault();
    const form = event.target;
    const out = $("#upload-result");
    const hex = form.elements.hex.files[0];
    const sig = form.elements.sig.files[0];
    const version = form.elements.version.value.trim();
    out.classList.remove("error");
    if (!hex || !version || state.uploading) return;
    const button = $("button[type=submit]", form);
    state.uploading = true;
    setBusy(button, true);
    setText(out, "Uploading " + hex.name + "…");
    try {
      const body = { version, name: hex.name, content: await hex.text() };
      if (sig) body.signature = await sig.text();
      const fw = await api("POST", "/admin/firmwares", body);
      setText(out, "Registered " + fw.version + " (" + fw.size + " bytes, MD5 " + fw.md5 + ", "
        + (fw.signed ? "signed by key " + fw.key_id : "unsigned") + ")");
      form.reset();
      reload("firmwares", loadFirmwares);
    } catch (err) {
      out.classList.add("error");
      setText(out, err.message);
    } finally {
      state.uploading = false;
      setBusy(button, false);
    }
  }

  // ------------------------------------------------------------ rollout

  const FINISHED = ["done", "skipped", "failed", "timeout"];

  function batchItem(b, current) {
    const counts = b.counts || {};
    const finished = FINISHED.reduce((n, s) => n + (counts[s] || 0), 0);
    const li = el("li");
    if (b.number === current) li.setAttribute("aria-current", "step");
    const head = el("div", { class: "batch-head" });
    head.append(el("strong", null, "Batch " + b.number + (b.canary ? " (canary)" : "")),
      el("span", { class: "count" }, finished + " of " + b.size + " finished"));
    const bar = el("progress", { max: String(b.size), value: String(finished) });
    bar.setAttribute("aria-label", "batch " + b.number + " progress");
    const devices = el("ul", { class: "batch-devices" });
    for (const d of b.devices || []) {
      devices.append(el("li", { "data-state": d.state, title: d.why || "" }, d.id + " " + d.state));
    }
    li.append(head, bar, devices);
    return li;
  }

  function renderRollout() {
    const ro = state.rollout;
    const card = $("#rollout");
    const buttons = { pause: $("button.pause", card), resume: $("button.resume", card), abort: $("button.abort", card) };
    const batches = $("#batches");
    // one rollout at a time: another starts once this one ended
    $("#rollout-start button[type=submit]").disabled = !!ro && (ro.state === "running" || ro.state === "paused");
    if (!ro) {
      setText($("#rollout-state"), "No rollout yet.");
      batches.replaceChildren();
      for (const b of Object.values(buttons)) b.disabled = true;
      return;
    }
    const nb = Array.isArray(ro.batches) ? ro.batches.length : 0;
    let text = ro.firmware + ": " + ro.state;
    if (ro.state === "running" || ro.state === "paused") text += ", batch " + ro.current_batch + " of " + nb;
    if (typeof ro.reason === "string") text += " (" + ro.reason + ")";
    setText($("#rollout-state"), text);
    $("#rollout-state").dataset.state = ro.state;
    buttons.pause.disabled = ro.state !== "running";
    buttons.resume.disabled = ro.state !== "paused";
    buttons.abort.disabled = ro.state !== "running" && ro.state !== "paused";
    batches.replaceChildren(...(ro.batches || []).map((b) => batchItem(b, ro.current_batch)));
  }

  async function rolloutAction(action) {
    try {
      state.rollout = await api("POST", "/admin/rollout/" + action, {});
      renderRollout();
    } catch (err) {
      report(err);
    }
  }

  function optionalNumber(input) {
    const v = input.value.trim();
    return v === "" ? undefined : Number(v);
  }

  async function startRollout(event) {
    event.preventDefault();
    const f = event.target.elements;
    const out = $("#rollout-result");
    out.classList.remove("error");
    try {
      state.rollout = await api("POST", "/admin/rollout", {
        firmware: f.firmware.value, canary: optionalNumber(f.canary), batch: optionalNumber(f.batch),
        max_failures: optionalNumber(f.max_failures),
      });
      state.hasRollout = true;
      setText(out, "Rollout of " + state.rollout.firmware + " started: " + state.rollout.devices + " devices in "
        + state.rollout.batches.length + " batches");
      renderRollout();
    } catch (err) {
      out.classList.add("error");
      setText(out, err.message);
    }
  }

  // ------------------------------------------------------------ the device page

  // One read: the device with its latest MAX_POINT_ROWS points a channel
  // (?recent; a cloud that does not know it sends them all, still one read).
  async function loadDevicePage() {
    const id = state.device;
    if (id === null) return;
    const dev = await api("GET", "/admin/devices/" + encodeURIComponent(id) + "?recent=" + MAX_POINT_ROWS);
    if (id !== state.device) return;
    const channels = dev.datapoints && typeof dev.datapoints === "object" ? dev.datapoints : {};
    renderDevicePage(dev, channels);
  }

  function renderDevicePage(dev, channels) {
    const page = $("#device-page");
    const online = dev.connected === true;
    setText($("h2", page), dev.id);
    setText($(".d-connection", page), online ? "online (" + dev.transport + ")" : "offline");
    setText($(".d-peer", page), online ? dev.peer : "");
    showDeviceHeartbeat(dev.last_heartbeat);
    setText($(".d-version", page), dev.version || "not reported");
    const statuses = Array.isArray(channels[STATUS_CHANNEL]) ? channels[STATUS_CHANNEL] : [];
    const history = statuses.map((p) => el("li", null, clock(p.received / 1000) + " " + pointValue(p)));
    $("#history").replaceChildren(...history);
    const rows = [];
    for (const [chn, list] of Object.entries(channels)) {
      if (Array.isArray(list)) for (const p of list) rows.push({ chn, p });
    }
    rows.sort((a, b) => b.p.received - a.p.received);
    const trs = rows.slice(0, MAX_POINT_ROWS).map(({ chn, p }) => {
      const tr = el("tr");
      tr.append(el("td", { class: "channel" }, chn), el("td", { class: "value" }, pointValue(p)),
        el("td", { class: "time", title: fullDate(p.received / 1000) }, clock(p.received / 1000)));
      return tr;
    });
    $("#points tbody").replaceChildren(...trs);
  }

  function showDeviceHeartbeat(at) {
    setText($("#device-page .d-heartbeat"), at ? fullDate(at) : "none yet");
  }

  // #device/ID shows that device's page; anything else the dashboard.
  function route() {
    const m = location.hash.match(/^#device\/(.+)$/);
    let id = null;
    if (m) {
      try { id = decodeURIComponent(m[1]); } catch (e) { id = m[1]; }
    }
    state.device = id;
    $("#dashboard").hidden = id !== null;
    $("#device-page").hidden = id === null;
    if (id !== null) {
      setText($("#device-page h2"), id);
      $("#history").replaceChildren();
      $("#points tbody").replaceChildren();
      reload("device", loadDevicePage);
    }
  }

  // ------------------------------------------------------------ start

  function start() {
    $("#login").addEventListener("submit", (event) => {
      event.preventDefault();
      const input = $("#login input[name=token]");
      const token = input.value.trim();
      input.value = "";
      if (token) login(token);
    });
    $("#logout").addEventListener("click", () => showLogin(""));
    $("#upload").addEventListener("submit", upload);
    $("#rollout-start").addEventListener("submit", startRollout);
    for (const action of ["pause", "resume", "abort"]) {
      $("#rollout button." + action).addEventListener("click", () => rolloutAction(action));
    }
    $("#show-heartbeats").addEventListener("change", redrawActivity);
    window.addEventListener("hashchange", () => {
      const token = tokenFromFragment();
      if (token) login(token);
      else if (state.token) route();
    });
    const token = tokenFromFragment() || sessionStorage.getItem(TOKEN_KEY);
    if (token) login(token);
    else showLogin("");
  }

  start();
})();
