// The delivery inspector's page: polls /api/status and /api/deliveries every 2 s and renders
// them. Every value taken from a delivery goes into the page as text (textContent), never as
// markup.
"use strict";

const $ = (id) => document.getElementById(id);

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "" : String(text);
  if (className) td.className = className;
  return td;
}

function fill(list, pairs) {
  list.replaceChildren();
  for (const [k, v] of pairs) {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = v;
    list.append(dt, dd);
  }
}

function time(iso) {
  return iso ? new Date(iso).toLocaleString() : "never";
}

async function json(url) {
  const r = await fetch(url, { credentials: "same-origin", cache: "no-store" });
  if (r.status === 401) {
    window.location.reload();
    throw new Error("signed out");
  }
  if (!r.ok) throw new Error(url + ": " + r.status);
  return r.json();
}

const triggers = new Set();

function renderStatus(s) {
  const ready = s.ready.ready ? "ready" : "not_ready";
  $("ready").dataset.state = ready;
  $("ready").textContent = s.ready.ready ? "ready" : "not ready";
  fill($("checks"), Object.entries(s.ready.checks));
  if (s.subscription) {
    fill($("subscription"), [["id", s.subscription.id], ["url", s.subscription.url], ["events", s.subscription.events.join(", ")]]);
  }
  const rows = [];
  const names = new Set([...Object.keys(s.deliveries.since_start), ...Object.keys(s.deliveries.last_hour)]);
  for (const t of [...names].sort()) {
    triggers.add(t);
    const tr = document.createElement("tr");
    tr.append(cell(t), cell(s.deliveries.last_hour[t] || 0), cell(s.deliveries.since_start[t] || 0));
    rows.push(tr);
  }
  $("per-trigger").replaceChildren(...rows);
  $("last-accepted").textContent = time(s.last_accepted);
  $("duplicates").textContent = s.duplicates;
  const rejected = Object.entries(s.rejected);
  fill($("rejected"), rejected.length ? rejected : [["none", ""]]);
  const lag = s.lag_seconds;
  $("lag").textContent = lag.p50 === null ? "–" : lag.p50.toFixed(2) + " s / " + lag.p99.toFixed(2) + " s";
  $("spool").textContent = s.spool.records + " records, " + s.spool.bytes + " bytes";
  $("dead-letters").textContent = s.dead_letters;
  const written = Object.entries(s.written).map(([table, w]) => {
    const tr = document.createElement("tr");
    tr.append(cell(table), cell(w.files), cell(w.rows));
    return tr;
  });
  $("written").replaceChildren(...written);
  const select = $("trigger");
  const have = new Set([...select.options].map((o) => o.value));
  for (const t of [...triggers].sort()) {
    if (!have.has(t)) {
      const o = document.createElement("option");
      o.value = t;
      o.textContent = t;
      select.append(o);
    }
  }
}

function landedText(d) {
  if (d.landed) return d.landed.table + (d.landed.reason ? " (" + d.landed.reason + ")" : "") + ": " + d.landed.key;
  if (d.outcome === "accepted") return "pending";
  return "";
}

function renderDeliveries(list) {
  $("kept").textContent = "(" + list.deliveries.length + " shown, " + list.kept + " kept)";
  const rows = list.deliveries.map((d) => {
    const tr = document.createElement("tr");
    tr.dataset.id = d.id;
    const outcome = d.outcome === "accepted" || d.outcome === "duplicate" ? d.outcome : "rejected";
    tr.append(
      cell(time(d.received_at)),
      cell(d.event_id),
      cell(d.trigger),
      cell(d.outcome + (d.status !== 200 ? " (" + d.status + ")" : ""), "outcome-" + outcome),
      cell(d.signature),
      cell(d.remote),
      cell(d.size),
      cell(landedText(d), "landed"),
    );
    tr.addEventListener("click", () => show(d.id));
    return tr;
  });
  $("deliveries").tBodies[0].replaceChildren(...rows);
}

async function show(id) {
  const d = await json("/api/deliveries/" + encodeURIComponent(id));
  $("detail-id").textContent = "#" + d.id + " " + (d.event_id || "");
  const rows = d.headers.map(([k, v]) => {
    const tr = document.createElement("tr");
    tr.append(cell(k), cell(v));
    return tr;
  });
  $("detail-headers").tBodies[0].replaceChildren(...rows);
  $("detail-body").textContent = d.body === null ? "(not kept: only signed deliveries' bodies are shown)" : d.body;
  $("detail").hidden = false;
}

async function refresh() {
  try {
    const params = new URLSearchParams();
    if ($("outcome").value) params.set("outcome", $("outcome").value);
    if ($("trigger").value) params.set("trigger", $("trigger").value);
    const [status, list] = await Promise.all([json("/api/status"), json("/api/deliveries?" + params)]);
    renderStatus(status);
    renderDeliveries(list);
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    $("updated").textContent = "cannot reach the bridge: " + e.message;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("outcome").addEventListener("change", refresh);
  $("trigger").addEventListener("change", refresh);
  $("close").addEventListener("click", () => { $("detail").hidden = true; });
  refresh();
  setInterval(refresh, 2000);
});
