// Keel operations dashboard: polls /gateway/dashboard and draws it.
// Plain JavaScript, no build step; uPlot (vendored) draws the charts.
// Everything from the server is written with textContent, never as HTML.
"use strict";

(function () {
  /** How often the page asks for fresh data (ms). */
  const POLL_MS = 2000;
  /** Longest one poll may take before it is abandoned (ms). */
  const POLL_TIMEOUT_MS = 5000;
  /** sessionStorage key of the bearer token (this tab only). */
  const TOKEN_KEY = "keel.dashboard.token";
  /** Chart height (px). */
  const CHART_HEIGHT = 180;
  const COLOURS = ["#1858a8", "#c0392b", "#1f8a4c", "#b7791f", "#6b46c1"];

  const $ = (id) => document.getElementById(id);
  let charts = {};
  let timer = null;

  // The token: from the URL fragment (never sent to a server), then kept in
  // this tab's sessionStorage and the fragment cleared from the address bar.
  function takeToken() {
    const m = /(?:^#|&)token=([^&]+)/.exec(window.location.hash);
    if (m) {
      sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
      history.replaceState(null, "", window.location.pathname);
    }
    return sessionStorage.getItem(TOKEN_KEY);
  }

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function badge(text, cls) {
    return el("span", text, "badge " + cls);
  }

  function fmt(v, digits) {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    return Number(v).toFixed(digits === undefined ? 0 : digits);
  }

  function when(ms) {
    if (!ms) return "–";
    return new Date(ms).toLocaleString();
  }

  function ago(ms, now) {
    if (!ms) return "";
    const s = Math.max(0, Math.round((now - ms) / 1000));
    if (s < 120) return s + " s ago";
    if (s < 7200) return Math.round(s / 60) + " min ago";
    return Math.round(s / 3600) + " h ago";
  }

  function setStatus(text, error) {
    const s = $("status");
    s.textContent = text;
    s.className = error ? "status error" : "status";
  }

  function showLogin(message) {
    $("login").hidden = false;
    setStatus(message, true);
  }

  // ---- panels ------------------------------------------------------------

  function renderCluster(c) {
    const leader = c.members.find((m) => m.leader);
    $("leader").textContent = leader && leader.id !== null ? String(leader.id)
      : (c.leader_id !== null ? String(c.leader_id) : "none");
    const body = $("members");
    body.replaceChildren();
    for (const m of c.members) {
      const tr = document.createElement("tr");
      tr.dataset.nodeId = m.id === null ? "" : String(m.id);
      tr.dataset.health = m.health;
      const role = el("td");
      role.append(m.leader ? badge("leader", "leader") : document.createTextNode(m.role || "–"));
      const health = el("td");
      health.append(badge(m.health, m.health));
      const offset = m.clock_offset_ms === null ? "–" : m.clock_offset_ms + " ms";
      tr.append(el("td", m.id === null ? "?" : m.id), el("td", m.addr), role,
        el("td", m.membership || "–"), health, el("td", fmt(m.term)),
        el("td", fmt(m.applied_index)), el("td", fmt(m.lag)), el("td", offset));
      body.append(tr);
    }
  }

  // Who raised an alert: a node, or the gateway itself (no node id).
  function raisedBy(x) {
    return x.node_id == null ? "gateway" : "node " + x.node_id;
  }

  function renderAlerts(a, now) {
    const list = $("alerts");
    list.replaceChildren();
    if (a.active.length === 0 && a.history.length === 0) {
      list.append(el("li", "No alerts.", "muted"));
      return;
    }
    for (const x of a.active) {
      const li = el("li");
      li.dataset.open = "true";
      li.append(badge(x.severity, x.severity), " ",
        el("strong", x.name), " " + raisedBy(x) + " · " + x.summary +
        " · since " + ago(x.started_ms, now));
      list.append(li);
    }
    for (const x of a.history) {
      const li = el("li", null, "ended");
      li.dataset.open = "false";
      li.append(badge(x.severity, "info"), " ", el("strong", x.name),
        " " + raisedBy(x) + " · " + x.summary + " · ended " + ago(x.ended_ms, now));
      list.append(li);
    }
  }

  function figures(target, rows) {
    target.replaceChildren();
    for (const [k, v] of rows) target.append(el("dt", k), el("dd", v));
  }

  function renderAvailability(r) {
    const box = $("availability");
    box.replaceChildren();
    const dl = el("dl", null, "figures");
    const w = r.windows;
    const pct = (x) => x.requests === 0 ? "no requests" :
      (100 * x.availability).toFixed(3) + " % of " + x.requests;
    figures(dl, [["last 1 min", pct(w["1m"])], ["last 5 min", pct(w["5m"])],
      ["last hour", pct(w["1h"])], ["since start", pct(w.all)],
      ["outages", String(r.outages_total)],
      ["last recovery", r.last_recovery_ms === null ? "–" : r.last_recovery_ms + " ms"]]);
    box.append(dl);
    if (r.open_outage) {
      box.append(el("p", "Outage going on since " + when(r.open_outage.started_ms) +
        " (" + r.open_outage.failed_requests + " failed requests)", "badge down"));
    }
    const recent = r.outages.slice(-5).reverse();
    if (recent.length > 0) {
      const ul = el("ul", null, "problems");
      for (const o of recent) {
        ul.append(el("li", when(o.started_ms) + ": recovered in " + o.duration_ms +
          " ms (" + o.failed_requests + " failed)"));
      }
      box.append(ul);
    }
  }

  function backupLine(b, now) {
    if (!b) return "none";
    return b.id + " · index " + b.last_index + " · " + when(b.created_ms) +
      " (" + ago(b.created_ms, now) + ")";
  }

  function renderBackups(b, now) {
    const box = $("backups");
    box.replaceChildren();
    if (b === null) {
      box.append(el("p", "No backup repository configured.", "muted"));
      return;
    }
    const dl = el("dl", null, "figures");
    const rp = b.recovery_point;
    figures(dl, [["repository", b.repo], ["backups", String(b.count)],
      ["last full", backupLine(b.last_full, now)],
      ["last incremental", backupLine(b.last_incremental, now)],
      ["recovery point", rp ? "index " + rp.index + " · " + when(rp.time_ms) +
        " (" + ago(rp.time_ms, now) + ")" : "none"],
      ["checked", ago(b.checked_ms, now)]]);
    box.append(dl);
    if (b.error) box.append(el("p", b.error, "badge down"));
  }

  function renderBusiness(t) {
    const rows = [["orders placed", String(t.orders_placed)],
      ["orders paid", String(t.orders_paid)], ["orders refused", String(t.orders_refused)],
      ["orders cancelled", String(t.orders_cancelled)],
      ["orders expired", String(t.orders_expired)]];
    for (const [cur, minor] of Object.entries(t.revenue_minor)) {
      rows.push(["revenue " + cur, (minor / 100).toFixed(2)]);
    }
    figures($("business"), rows);
  }

  function renderProblems(p) {
    const ul = $("problems");
    ul.replaceChildren();
    if (p.length === 0) ul.append(el("li", "None: every node answered.", "muted"));
    for (const x of p) ul.append(el("li", x));
  }

  // ---- charts ------------------------------------------------------------

  function chart(id, labels) {
    const box = $(id);
    const width = Math.max(300, box.clientWidth || 500);
    const series = [{}].concat(labels.map((label, i) => ({
      label: label, stroke: COLOURS[i % COLOURS.length], width: 1.5, spanGaps: false,
    })));
    const empty = [[]].concat(labels.map(() => []));
    return new uPlot({ width: width, height: CHART_HEIGHT, series: series,
      scales: { x: { time: true } }, legend: { live: false } }, empty, box);
  }

  function ensureCharts(classes) {
    const key = classes.join(",");
    if (!charts.requests) {
      charts.requests = chart("chart-requests", ["requests/s"]);
      charts.latency = chart("chart-latency", ["p50 ms", "p99 ms"]);
      charts.orders = chart("chart-orders", ["placed/s", "paid/s"]);
    }
    if (charts.errorsKey !== key) {
      if (charts.errors) charts.errors.destroy();
      charts.errors = chart("chart-errors", classes.length ? classes : ["errors/s"]);
      charts.errorsKey = key;
    }
  }

  function renderCharts(points) {
    const classes = [];
    for (const p of points) {
      for (const c of Object.keys(p.errors_per_s_by_class)) {
        if (!classes.includes(c)) classes.push(c);
      }
    }
    classes.sort();
    ensureCharts(classes);
    const xs = points.map((p) => p.t_ms / 1000);
    charts.requests.setData([xs, points.map((p) => p.requests_per_s)]);
    charts.latency.setData([xs, points.map((p) => p.latency_ms_p50),
      points.map((p) => p.latency_ms_p99)]);
    charts.orders.setData([xs, points.map((p) => p.orders_placed_per_s),
      points.map((p) => p.orders_paid_per_s)]);
    const errs = classes.length ? classes.map((c) =>
      points.map((p) => p.errors_per_s_by_class[c] || 0)) : [points.map((p) => p.errors_per_s)];
    charts.errors.setData([xs].concat(errs));
  }

  // The charts follow their boxes' width when the window changes size.
  function resizeCharts() {
    for (const [id, c] of [["chart-requests", charts.requests], ["chart-latency", charts.latency],
      ["chart-errors", charts.errors], ["chart-orders", charts.orders]]) {
      if (c) c.setSize({ width: Math.max(300, $(id).clientWidth || 500), height: CHART_HEIGHT });
    }
  }

  // ---- polling -----------------------------------------------------------

  function render(d) {
    const now = d.generated_ms;
    renderCluster(d.cluster);
    renderAlerts(d.alerts, now);
    renderAvailability(d.availability);
    renderBackups(d.backups, now);
    renderBusiness(d.business);
    renderProblems(d.problems);
    if (typeof uPlot === "function") renderCharts(d.series);
    setStatus("updated " + new Date(now).toLocaleTimeString() +
      (d.cluster.answered_by ? " · cluster view from " + d.cluster.answered_by
        : " · no node answered /v1/cluster"), false);
  }

  async function poll() {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) {
      showLogin("sign in to see the cluster");
      return;
    }
    const abort = new AbortController();
    const timeout = setTimeout(() => abort.abort(), POLL_TIMEOUT_MS);
    try {
      const r = await fetch("/gateway/dashboard", {
        headers: { Authorization: "Bearer " + token },
        cache: "no-store", signal: abort.signal,
      });
      if (r.status === 401) {
        sessionStorage.removeItem(TOKEN_KEY);
        showLogin("the token was refused (it needs admin, operator or support)");
        return;
      }
      if (!r.ok) throw new Error("the gateway answered " + r.status);
      render(await r.json());
    } catch (e) {
      setStatus("update failed at " + new Date().toLocaleTimeString() + ": " +
        (e && e.message ? e.message : String(e)), true);
    } finally {
      clearTimeout(timeout);
    }
    timer = setTimeout(poll, POLL_MS);
  }

  function start() {
    $("login").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const v = $("token").value.trim();
      if (v) {
        sessionStorage.setItem(TOKEN_KEY, v);
        $("token").value = "";
        $("login").hidden = true;
        if (timer) clearTimeout(timer);
        poll();
      }
    });
    window.addEventListener("resize", resizeCharts);
    takeToken();
    poll();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
