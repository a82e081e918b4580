// leasedns status page: reads the control API with the token kept in sessionStorage, shows
// leases, pools, names, conflicts, DNS counters, and the live event stream. No libraries.
"use strict";

const API = "/api/v1";
const $ = (sel) => document.querySelector(sel);
// armed: the address whose "Release" was clicked once (a second click within 4 s releases).
const state = { leases: [], sort: { key: "ip", dir: 1 }, filter: "", armed: null };

function token() { return sessionStorage.getItem("leasedns-token") || ""; }

function headers() {
  const t = token();
  return t ? { Authorization: "Bearer " + t } : {};
}

function show(text, ok) {
  const msg = $("#msg");
  msg.textContent = text;
  msg.className = ok ? "ok" : "";
  msg.hidden = !text;
}

// fetch an API path; throws an Error with the API's own message on failure.
async function api(path, options) {
  const opts = Object.assign({ headers: headers() }, options || {});
  const res = await fetch(API + path, opts);
  const text = await res.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
  if (!res.ok) {
    const why = body && body.error ? body.error : text || res.statusText;
    throw new Error(res.status + " " + why);
  }
  return body;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
}

function ipKey(ip) {
  return ip.split(".").reduce((n, part) => n * 256 + Number(part), 0);
}

function when(unix) {
  const left = unix - Date.now() / 1000;
  if (left <= 0) return "ended";
  if (left < 120) return Math.round(left) + " s";
  if (left < 7200) return Math.round(left / 60) + " min";
  return Math.round(left / 3600) + " h";
}

function renderLeases() {
  const f = state.filter.toLowerCase();
  const rows = state.leases.filter((l) =>
    !f || [l.ip, l.mac, l.hostname || "", l.subnet || "", l.state].some((v) => v.toLowerCase().includes(f)));
  const { key, dir } = state.sort;
  rows.sort((a, b) => {
    const va = key === "ip" ? ipKey(a.ip) : (a[key] ?? "");
    const vb = key === "ip" ? ipKey(b.ip) : (b[key] ?? "");
    return (va < vb ? -1 : va > vb ? 1 : 0) * dir;
  });
  const body = $("#leases tbody");
  body.replaceChildren(...rows.map((l) => {
    const release = el("button", { class: "release danger", type: "button" },
      state.armed === l.ip ? "Sure?" : "Release");
    release.addEventListener("click", () => confirmRelease(l.ip));
    const reserve = el("button", { class: "reserve quiet", type: "button" }, "Make static");
    reserve.addEventListener("click", () => makeStatic(l.ip, reserve));
    return el("tr", { "data-ip": l.ip },
      el("td", { "data-label": "Address" }, l.ip),
      el("td", { "data-label": "Name", class: "hostname" }, l.hostname || "—"),
      el("td", { "data-label": "MAC" }, l.mac),
      el("td", { "data-label": "Expires", title: new Date(l.expires * 1000).toLocaleString() }, when(l.expires)),
      el("td", { "data-label": "State" }, l.state),
      el("td", { "data-label": "Subnet" }, l.subnet || ""),
      el("td", { class: "actions" }, release, reserve));
  }));
  $("#lease-count").textContent = rows.length === state.leases.length
    ? "(" + rows.length + ")" : "(" + rows.length + " of " + state.leases.length + ")";
}

// Release asks once more ("Sure?"): the second click within 4 s releases. Kept in `state`,
// so a table redrawn in between keeps it.
let disarm = null;
function confirmRelease(ip) {
  clearTimeout(disarm);
  if (state.armed === ip) { state.armed = null; renderLeases(); releaseLease(ip); return; }
  state.armed = ip;
  renderLeases();
  disarm = setTimeout(() => { state.armed = null; renderLeases(); }, 4000);
}

async function releaseLease(ip) {
  try {
    await api("/leases/" + ip, { method: "DELETE" });
    show("Released " + ip, true);
    refreshSoon();
  } catch (e) { show("Release " + ip + ": " + e.message); }
}

async function makeStatic(ip, button) {
  button.disabled = true;
  try {
    await api("/leases/" + ip + "/reserve", { method: "POST" });
    show(ip + " is now a reservation", true);
    refreshSoon();
  } catch (e) { show("Make static " + ip + ": " + e.message); }
  button.disabled = false;
}

function renderPools(pools) {
  $("#pools").replaceChildren(...pools.map((p) => {
    const pct = (n) => (p.size ? (100 * n / p.size) : 0).toFixed(1) + "%";
    const bound = el("span", { class: "bound", title: p.bound + " bound" });
    bound.style.width = pct(p.bound);
    const declined = el("span", { class: "declined", title: p.declined + " declined" });
    declined.style.width = pct(p.declined);
    return el("div", { class: "pool", "data-subnet": p.subnet },
      el("div", { class: "label" }, el("strong", {}, p.subnet),
        el("span", {}, p.bound + " / " + p.size + " used (" + pct(p.bound + p.declined) + ")")),
      el("div", { class: "bar", role: "img", "aria-label": p.bound + " of " + p.size + " bound" }, bound, declined),
      el("div", { class: "legend" }, p.bound + " bound · " + p.declined + " declined · " + p.free + " free"));
  }));
}

function renderNames(names, conflicts) {
  $("#names tbody").replaceChildren(...names.map((n) =>
    el("tr", { "data-name": n.name },
      el("td", {}, n.name), el("td", {}, n.type), el("td", {}, n.value),
      el("td", {}, n.source + (n.state === "waiting" ? " (waiting)" : "")))));
  $("#conflicts").replaceChildren(...conflicts.map((c) =>
    el("div", { class: "conflict" }, c.name + ": " + c.waiting + " waits, held by " +
      c.holder.kind + (c.holder.ip ? " " + c.holder.ip : ""))));
}

function renderStatus(s) {
  $("#about").textContent = "v" + s.version + " · up " + Math.round(s.uptime_seconds / 60) + " min";
  const dns = s.dns || {};
  const dhcp = s.dhcp || {};
  const items = [["Responses", dns.responses], ["Cache hits", dns.cache_hits],
    ["Forwarded", dns.forwarded], ["Refused", dns.refused], ["Dropped", dns.dropped],
    ["DHCP replies", dhcp.replies]];
  $("#dns").replaceChildren(...items.filter(([, v]) => v !== undefined).map(([k, v]) =>
    el("div", {}, el("dt", {}, k), el("dd", {}, String(v)))));
}

async function refresh() {
  try {
    const [leases, pools, names, conflicts, status] = await Promise.all([
      api("/leases"), api("/pools"), api("/names"), api("/conflicts"), api("/status")]);
    state.leases = leases;
    renderLeases();
    renderPools(pools);
    renderNames(names, conflicts);
    renderStatus(status);
    if ($("#msg").textContent.startsWith("Reading")) show("");
  } catch (e) {
    show("Reading the API: " + e.message + (token() ? "" : " (paste the API token above)"));
  }
}

let pending = null;
function refreshSoon() {
  clearTimeout(pending);
  pending = setTimeout(refresh, 250);
}

function addEvent(e) {
  const what = e.kind === "lease"
    ? "lease " + e.ip + " " + e.mac + (e.hostname ? " " + e.hostname : "") + (e.reason ? " (" + e.reason + ")" : "")
    : e.kind === "record"
      ? "record " + e.name + (e.type ? " " + e.type : "") + (e.data ? " " + e.data : "")
      : "name " + e.name + " → " + e.ip;
  const item = el("li", { class: "event", "data-kind": e.kind, "data-action": e.action },
    el("span", { class: "tag " + e.action }, e.action), " " + what);
  const list = $("#events");
  list.prepend(item);
  while (list.children.length > 100) list.lastChild.remove();
}

let source = null;
function listen() {
  if (source) source.close();
  const t = token();
  source = new EventSource(API + "/events" + (t ? "?access_token=" + encodeURIComponent(t) : ""));
  source.addEventListener("open", () => { $("#live").textContent = "live"; });
  source.addEventListener("error", () => { $("#live").textContent = "reconnecting"; });
  for (const kind of ["lease", "name", "record"]) {
    source.addEventListener(kind, (m) => { addEvent(JSON.parse(m.data)); refreshSoon(); });
  }
  source.addEventListener("lagged", () => refreshSoon());
}

function setup() {
  $("#token").value = token();
  $("#token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem("leasedns-token", $("#token").value.trim());
    show("Token kept for this tab", true);
    refresh();
    listen();
  });
  $("#forget-token").addEventListener("click", () => {
    sessionStorage.removeItem("leasedns-token");
    $("#token").value = "";
    show("Token forgotten", true);
    listen();
  });
  $("#search").addEventListener("input", (ev) => { state.filter = ev.target.value; renderLeases(); });
  for (const th of document.querySelectorAll("#leases th[data-key]")) {
    th.addEventListener("click", () => {
      const key = th.dataset.key;
      state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : 1 };
      for (const other of document.querySelectorAll("#leases th[data-key]")) other.removeAttribute("aria-sort");
      th.setAttribute("aria-sort", state.sort.dir > 0 ? "ascending" : "descending");
      renderLeases();
    });
  }
  refresh();
  listen();
  setInterval(refresh, 10000);
}

document.addEventListener("DOMContentLoaded", setup);
