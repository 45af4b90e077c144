// Sentinel's dashboard: reads the operator API with the read token (kept in this tab's sessionStorage), follows
// GET /api/events for live account, positions and resting orders, and drives the kill switch with the admin token.
"use strict";

const READ_KEY = "sentinel.read_token";
const ADMIN_KEY = "sentinel.admin_token";
// The journal's lists (signals, orders) are re-read at most this often while events arrive.
const LIST_REFRESH_MS = 2000;
const MAX_POINTS = 1000;

const $ = (id) => document.getElementById(id);
let events = null;
let equityPoints = [];
let listsTimer = null;
let lastListsRefresh = 0;

function readToken() { return sessionStorage.getItem(READ_KEY); }

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers, { Authorization: "Bearer " + readToken() });
  const res = await fetch(path, Object.assign({}, options, { headers, credentials: "same-origin" }));
  if (res.status === 401 && !options.admin) {
    forget("The read token was refused.");
    throw new Error("unauthorized");
  }
  return res;
}

async function getJson(path) {
  const res = await api(path);
  if (!res.ok) throw new Error(path + ": HTTP " + res.status);
  return res.json();
}

function text(value) {
  return value === null || value === undefined || value === "" ? "–" : String(value);
}

function cell(row, value, cls) {
  const td = document.createElement("td");
  td.textContent = text(value);
  if (cls) td.className = cls;
  row.appendChild(td);
}

function signClass(value) {
  if (typeof value !== "string" && typeof value !== "number") return "";
  const s = String(value);
  if (s.startsWith("-")) return "neg";
  return /^[0.]*$/.test(s) ? "" : "pos";
}

function fillTable(id, rows, columns) {
  const body = $(id).querySelector("tbody");
  body.replaceChildren();
  if (rows.length === 0) {
    const tr = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = $(id).querySelectorAll("th").length;
    td.className = "empty";
    td.textContent = "none";
    tr.appendChild(td);
    body.appendChild(tr);
    return;
  }
  for (const row of rows) {
    const tr = document.createElement("tr");
    for (const [value, cls] of columns(row)) cell(tr, value, cls);
    body.appendChild(tr);
  }
}

function showAccount(account) {
  if (!account || account.error) return;
  $("equity").textContent = text(account.equity);
  $("balance").textContent = text(account.balance);
  $("unrealized").textContent = text(account.unrealized_pnl);
  $("realized").textContent = text(account.realized_pnl);
  $("fees").textContent = text(account.fees);
  $("exchange").textContent = text(account.exchange);
  const b = account.backlog || {};
  $("backlog").textContent = text(b.pending) + " pending / limit " + text(b.limit);
  showTradingState(account.trading_state);
  addEquityPoint(Date.now(), account.equity);
}

function showTradingState(state) {
  const badge = $("trading-state");
  badge.textContent = text(state);
  badge.className = "badge " + (state === "active" ? "ok" : "bad");
}

function showPositions(positions) {
  fillTable("positions", positions || [], (p) => [
    [p.symbol], [p.side], [p.quantity], [p.entry_price], [p.mark_price], [p.liquidation_price],
    [p.unrealized_pnl, signClass(p.unrealized_pnl)], [p.leverage ? p.leverage + "x" : null],
  ]);
}

function showOpenOrders(open) {
  const rows = [];
  for (const e of (open && open.entries) || []) {
    rows.push([e.symbol, "limit entry", e.side, e.quantity, e.limit_price]);
  }
  for (const x of (open && open.exits) || []) {
    if (x.stop_loss) rows.push([x.symbol, "stop loss", "", "", x.stop_loss]);
    if (x.take_profit) rows.push([x.symbol, "take profit", "", "", x.take_profit]);
  }
  fillTable("open-orders", rows, (r) => r.map((v) => [v]));
}

// A signal's outcome in a few words: its status and, for a denial or rejection, why.
function outcomeText(record) {
  const outcome = record.outcome || {};
  const reasons = [];
  const why = (o) => {
    if (!o) return;
    if (o.reason && o.reason.code) reasons.push(o.reason.code);
    else if (typeof o.reason === "string") reasons.push(o.reason);
    if (o.error) reasons.push(o.error);
  };
  why(outcome);
  for (const o of outcome.orders || []) why(o);
  return record.status + (reasons.length ? ": " + reasons.join(", ") : "");
}

function orderDetail(o) {
  if (o.fill) return text(o.fill.quantity) + " @ " + text(o.fill.price) + (o.fill.reason ? " (" + o.fill.reason + ")" : "");
  if (o.reason && o.reason.code) return o.reason.code;
  return o.error || o.reason || "";
}

async function refreshLists() {
  lastListsRefresh = Date.now();
  const [signals, orders] = await Promise.all([
    getJson("/api/signals?limit=50"), getJson("/api/orders?limit=50"),
  ]);
  fillTable("signals", signals.signals, (s) => {
    const sig = s.signal || {};
    const outcome = outcomeText(s);
    const intent = sig.intent || {};
    const action = [intent.kind, intent.side].filter(Boolean).join(" ");
    return [[s.seq], [sig.source], [sig.symbol], [action], [outcome, /denied|rejected|failed/.test(outcome) ? "neg" : ""]];
  });
  fillTable("orders", orders.orders, (o) => [[o.seq], [o.symbol], [o.kind], [orderDetail(o)]]);
}

function scheduleLists() {
  if (listsTimer) return;
  const wait = Math.max(0, LIST_REFRESH_MS - (Date.now() - lastListsRefresh));
  listsTimer = setTimeout(() => {
    listsTimer = null;
    refreshLists().catch(report);
  }, wait);
}

async function refreshHealth() {
  const items = [];
  const ready = await fetch("/readyz").then((r) => r.json()).catch(() => null);
  if (!ready) items.push(["the daemon does not answer", "bad"]);
  else if (ready.ready) items.push(["ready", "ok"]);
  else for (const r of ready.reasons || []) items.push([r, "bad"]);
  const account = await getJson("/api/account").catch(() => null);
  if (account) {
    const venue = account.venue || {};
    const feeds = venue.feeds || {};
    for (const name of Object.keys(feeds)) items.push(["feed " + name + ": " + feeds[name], ""]);
    if (venue.standing && venue.standing.halted) items.push(["venue halted: " + venue.standing.halted, "bad"]);
    items.push(["journal offset " + text(account.log_offset), ""]);
    showAccount(account);
  }
  const list = $("health-list");
  list.replaceChildren();
  for (const [line, cls] of items) {
    const li = document.createElement("li");
    li.textContent = line;
    if (cls) li.className = cls;
    list.appendChild(li);
  }
}

function addEquityPoint(at, equity) {
  const value = Number(equity);
  if (!Number.isFinite(value)) return;
  const last = equityPoints[equityPoints.length - 1];
  if (last && last[1] === value) return;
  equityPoints.push([at, value]);
  if (equityPoints.length > MAX_POINTS) equityPoints.shift();
  drawChart();
}

// The equity curve, for the eye only: the numbers above are the exact ones.
function drawChart() {
  const canvas = $("equity-chart");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 300;
  const height = canvas.clientHeight || 140;
  canvas.width = Math.round(width * ratio);
  canvas.height = Math.round(height * ratio);
  const ctx = canvas.getContext("2d");
  ctx.scale(ratio, ratio);
  ctx.clearRect(0, 0, width, height);
  ctx.fillStyle = "#8b949e";
  ctx.font = "11px system-ui, sans-serif";
  if (equityPoints.length < 2) {
    ctx.fillText("the curve starts with the first change of equity", 4, height / 2);
    return;
  }
  const xs = equityPoints.map((p) => p[0]);
  const ys = equityPoints.map((p) => p[1]);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (y0 === y1) { y0 -= 1; y1 += 1; }
  const pad = 14;
  const px = (x) => pad + ((x - x0) / Math.max(1, x1 - x0)) * (width - 2 * pad);
  const py = (y) => height - pad - ((y - y0) / (y1 - y0)) * (height - 2 * pad);
  ctx.fillText(y1.toFixed(2), 2, 10);
  ctx.fillText(y0.toFixed(2), 2, height - 2);
  ctx.strokeStyle = ys[ys.length - 1] >= ys[0] ? "#3fb950" : "#f85149";
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  equityPoints.forEach(([x, y], i) => (i ? ctx.lineTo(px(x), py(y)) : ctx.moveTo(px(x), py(y))));
  ctx.stroke();
}

function setLive(on) {
  const badge = $("live");
  badge.textContent = on ? "live" : "offline";
  badge.className = "badge " + (on ? "ok" : "bad");
}

// EventSource cannot send headers: POST /api/session trades the read token for an HttpOnly cookie it can send.
async function connect() {
  if (events) events.close();
  const res = await api("/api/session", { method: "POST" });
  if (!res.ok) throw new Error("session: HTTP " + res.status);
  events = new EventSource("/api/events");
  events.addEventListener("open", () => setLive(true));
  events.addEventListener("snapshot", (e) => {
    const data = JSON.parse(e.data);
    showAccount(data.account);
    showPositions(data.positions);
    showOpenOrders(data.open_orders);
    scheduleLists();
  });
  events.addEventListener("error", () => {
    setLive(false);
    // A refused stream (expired session, too many streams) is not retried by the browser: start over later.
    if (events.readyState === EventSource.CLOSED) setTimeout(() => connect().catch(report), 5000);
  });
}

async function loadEquity() {
  const curve = await getJson("/api/equity");
  equityPoints = curve.samples.map((s) => [s.at, Number(s.equity)]).filter((p) => Number.isFinite(p[1]));
  drawChart();
}

async function start() {
  $("login").hidden = true;
  $("board").hidden = false;
  await loadEquity();
  await Promise.all([refreshHealth(), refreshLists()]);
  await connect();
}

function forget(message) {
  sessionStorage.removeItem(READ_KEY);
  sessionStorage.removeItem(ADMIN_KEY);
  if (events) events.close();
  events = null;
  setLive(false);
  $("board").hidden = true;
  $("login").hidden = false;
  const error = $("token-error");
  error.hidden = !message;
  error.textContent = message || "";
}

function report(e) {
  if (e && e.message !== "unauthorized") $("switch-result").textContent = String(e.message || e);
}

// The kill switch: each press sends the admin token as a header, never a cookie, so no other page can press it.
async function command(path, body) {
  const token = $("admin-token").value.trim() || sessionStorage.getItem(ADMIN_KEY) || "";
  if (!token) {
    $("switch-result").textContent = "Enter the admin token first.";
    return;
  }
  sessionStorage.setItem(ADMIN_KEY, token);
  const res = await fetch(path, {
    method: "POST",
    headers: { Authorization: "Bearer " + token, "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const answer = await res.json().catch(() => ({}));
  if (res.ok) {
    $("switch-result").textContent = "Trading is " + answer.trading_state + ".";
    showTradingState(answer.trading_state);
  } else {
    if (res.status === 401) sessionStorage.removeItem(ADMIN_KEY);
    $("switch-result").textContent = (answer.error && answer.error.message) || "HTTP " + res.status;
  }
  refreshHealth().catch(report);
}

document.addEventListener("DOMContentLoaded", () => {
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(READ_KEY, $("token").value.trim());
    $("token").value = "";
    start().catch(report);
  });
  $("halt").addEventListener("click", () => command("/api/trading-state", { state: "halted" }).catch(report));
  $("resume").addEventListener("click", () => command("/api/trading-state", { state: "active" }).catch(report));
  $("flatten").addEventListener("click", () => {
    if (confirm("Close every open position at market and stop new entries?")) command("/api/flatten", {}).catch(report);
  });
  $("forget").addEventListener("click", () => forget(""));
  window.addEventListener("resize", drawChart);
  if (sessionStorage.getItem(ADMIN_KEY)) $("admin-token").placeholder = "kept for this tab";
  if (readToken()) start().catch(report);
  else forget("");
  setInterval(() => { if (readToken()) refreshHealth().catch(report); }, 10000);
});
