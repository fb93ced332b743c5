// conntrace's HTML timeline: draws the data embedded in this page (see timeline.py for its shape).
// One row per TCP connection, grouped by host and pool; the x axis is the run's wall clock.
// Drawn on a canvas, only the rows in view: bars narrower than a pixel are merged into one
// pixel column, so that runs of 100,000 requests stay quick to draw and to read.
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("conntrace-data").textContent);
  const section = document.getElementById("timeline");
  const box = document.getElementById("lanes");
  const spacer = document.getElementById("spacer");
  const plot = document.getElementById("plot");
  const axis = document.getElementById("axis");
  const tip = document.getElementById("tip");
  const said = document.getElementById("said");
  const axisLabel = document.getElementById("axis-label");
  const ROW = 18, GUTTER = 200, RIGHT = 10, MIN_TOL = 3;
  const style = getComputedStyle(document.documentElement);
  const color = (name) => style.getPropertyValue("--" + name).trim();
  const COLORS = {};
  for (const name of ["dns", "tcp", "proxy", "tls", "setup", "reused", "fresh", "retry", "error", "discarded",
                      "idle", "end", "mark", "band", "muted", "fg", "rule"]) COLORS[name] = color(name);
  const END_COLORS = {"server closed": COLORS.error, "dropped while idle": COLORS.retry,
                      "discarded (pool full)": COLORS.discarded, "broken by an error": COLORS.error,
                      "closed by the client": COLORS.end, "open at exit": COLORS.muted};

  let violations = 0;
  document.addEventListener("securitypolicyviolation", () => {
    violations += 1;
    section.dataset.violations = String(violations);
  });
  section.dataset.violations = "0";

  // --- the rows --------------------------------------------------------------------------------
  const procs = data.processes;
  const t0 = procs.length ? Math.min(...procs.map((p) => p.base_ms)) : 0;
  const rows = [];
  let runEnd = 1;
  // Columns come as lists, or as runs of one value ({runs: [value, count, ...]}).
  function expand(column) {
    if (Array.isArray(column)) return column;
    const out = [];
    const runs = column.runs;
    for (let k = 0; k < runs.length; k += 2) for (let n = 0; n < runs[k + 1]; n++) out.push(runs[k]);
    return out;
  }
  function sums(values) {
    for (let i = 1; i < values.length; i++) values[i] += values[i - 1];
    return values;
  }
  // A setup's steps, from their names ("dns|tcp|proxy|tls") and (gap, duration) pairs after
  // `since`: [name, start, end, ...] in microseconds.
  function steps(p, names, times, at, since) {
    const flat = [];
    let previous = since;
    p.s(names).split("|").filter(Boolean).forEach((name, k) => {
      const start = previous + times[at + 2 * k];
      previous = start + times[at + 2 * k + 1];
      flat.push(name, start, previous);
    });
    return flat;
  }
  procs.forEach((p, pi) => {
    p.s = (i) => p.strings[i] || "";
    for (const name of Object.keys(p.bars)) p.bars[name] = expand(p.bars[name]);
    sums(p.bars.lane);
    const start = sums(p.bars.start);
    const g = {};
    for (const name of Object.keys(p.groups)) g[name] = expand(p.groups[name]);
    sums(g.pool);
    p.groups = g.target.map((target, k) => [p.s(target), g.pool[k], p.s(g.scheme[k]), g.max_size[k]]);
    const l = {};
    for (const name of Object.keys(p.lanes)) l[name] = expand(p.lanes[name]);
    sums(l.group); sums(l.id); sums(l.opened);
    let at = 0;
    p.lanes = l.group.map((group, k) => {
      const opened = l.opened[k], ready = opened + l.ready[k];
      const flat = steps(p, l.steps[k], l.step_times, at, opened);
      at += (flat.length / 3) * 2;
      return [group, l.id[k], opened, ready, ready + l.closed[k], l.end[k], l.detail[k],
              l.reason[k], flat];
    });
    p.failed = p.failed.map((f) => [f[0], f[1], f[2], f[3], f[4], steps(p, f[5], f[6], 0, f[1])]);
    p.off = p.base_ms - t0;
    runEnd = Math.max(runEnd, p.off + p.end_us / 1000);
    for (let i = 0; i < start.length; i++) {
      runEnd = Math.max(runEnd, p.off + (start[i] + p.bars.duration[i]) / 1000);
    }
    const laneOf = p.bars.lane;
    p.ranges = new Map();
    for (let i = 0; i < laneOf.length; i++) {
      const r = p.ranges.get(laneOf[i]);
      if (r) r[1] = i + 1; else p.ranges.set(laneOf[i], [i, i + 1]);
    }
    p.rowOf = new Map();
    // Hosts in the order the run first used them, each host's pools in the order made.
    const firstOfHost = new Map();
    p.groups.forEach((group, g) => { if (!firstOfHost.has(group[0])) firstOfHost.set(group[0], g); });
    const rank = p.groups.map((group) => firstOfHost.get(group[0]));
    const order = p.groups.map((g, gi) => gi).sort((a, b) =>
      rank[a] - rank[b] || p.groups[a][1] - p.groups[b][1]);
    const lanesOf = p.groups.map(() => []);
    p.lanes.forEach((lane, li) => lanesOf[lane[0]].push(li));
    p.failedOf = p.groups.map(() => []);
    p.failed.forEach((f, fi) => p.failedOf[f[0]].push(fi));
    for (const g of order) {
      const lanes = lanesOf[g];
      const failed = p.failedOf[g].length > 0 || p.ranges.has(-1 - g);
      if (!lanes.length && !failed) continue;
      const group = p.groups[g];
      rows.push({kind: "group", p: pi, g, target: group[0],
                 text: group[0] + (group[1] ? " · pool " + group[1] : "") +
                       (group[3] ? " (max " + group[3] + ")" : "") +
                       (procs.length > 1 ? " · pid " + p.pid : "")});
      for (const li of lanes) {
        p.rowOf.set(li, rows.length);
        rows.push({kind: "lane", p: pi, g, key: li, target: group[0]});
      }
      if (failed) {
        p.rowOf.set(-1 - g, rows.length);
        rows.push({kind: "failed", p: pi, g, key: -1 - g, target: group[0]});
      }
    }
  });
  const laneCount = rows.reduce((n, row) => n + (row.kind === "lane"), 0);
  const barCount = procs.reduce((n, p) => n + p.bars.lane.length, 0);
  section.dataset.lanes = String(laneCount);
  section.dataset.bars = String(barCount);

  // --- time and place --------------------------------------------------------------------------
  let v0 = 0, v1 = runEnd * 1.02;
  let width = 0, height = 0;
  const plotWidth = () => Math.max(width - GUTTER - RIGHT, 10);
  const X = (t) => GUTTER + (t - v0) / (v1 - v0) * plotWidth();
  const T = (x) => v0 + (x - GUTTER) / plotWidth() * (v1 - v0);
  const ms = (p, us) => p.off + us / 1000;
  const highlighted = new Set();
  let focus = null; // {r, i}: a row and a bar index of its process (or -1: the lane itself)

  function barKind(p, i) {
    const b = p.bars;
    if (b.error[i] && p.s(b.error[i])) return "error";
    if (b.attempt[i] > 1) return "retry";
    return b.reused[i] ? "reused" : "fresh";
  }

  function stepColor(name) {
    const base = name.split(" ")[0];
    return COLORS[base] || COLORS.setup;
  }

  // The first bar of [a, b) whose end is at or after t (bars of a lane are in start order and do
  // not overlap, so their ends are in order too).
  function firstEndingAfter(p, a, b, t) {
    // Requests without a connection may overlap: their row is read from its start.
    if (a < b && p.bars.lane[a] < 0) return a;
    const duration = p.bars.duration, start = p.bars.start;
    let lo = a, hi = b;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (ms(p, start[mid] + duration[mid]) < t) lo = mid + 1; else hi = mid;
    }
    return lo;
  }

  function barSpan(p, i, ready) {
    const b = p.bars;
    const s = Math.max(ms(p, b.start[i]), ready);
    return [s, Math.max(ms(p, b.start[i] + b.duration[i]), s)];
  }

  function hex(id) {
    const bytes = atob(id);
    let out = "";
    for (let k = 0; k < bytes.length; k++) out += bytes.charCodeAt(k).toString(16).padStart(2, "0");
    return out;
  }

  function laneTimes(row) {
    const p = procs[row.p];
    if (row.kind !== "lane") return null;
    const lane = p.lanes[row.key];
    return {opened: ms(p, lane[2]), ready: ms(p, lane[3]), closed: ms(p, lane[4]),
            end: p.s(lane[5]), detail: p.s(lane[6]), reason: p.s(lane[7]), steps: lane[8]};
  }

  // --- drawing ---------------------------------------------------------------------------------
  let drawnBars = 0;
  let pending = false;
  function schedule() {
    if (!pending) { pending = true; requestAnimationFrame(() => { pending = false; draw(); }); }
  }

  function resize() {
    const ratio = window.devicePixelRatio || 1;
    width = box.clientWidth;
    height = box.clientHeight;
    for (const [canvas, h] of [[plot, height], [axis, 24]]) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(h * ratio);
      canvas.style.width = width + "px";
      canvas.style.height = h + "px";
      canvas.getContext("2d").setTransform(ratio, 0, 0, ratio, 0, 0);
    }
    // The canvas stays at the top of the scrolled box; the spacer after it makes up the height.
    spacer.style.height = Math.max(rows.length * ROW - height, 0) + "px";
    draw();
  }

  function draw() {
    const ctx = plot.getContext("2d");
    const top = box.scrollTop;
    ctx.clearRect(0, 0, width, height);
    ctx.font = "12px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    const first = Math.floor(top / ROW);
    const last = Math.min(rows.length, Math.ceil((top + height) / ROW));
    drawnBars = 0;
    for (let r = first; r < last; r++) drawRow(ctx, r, r * ROW - top);
    if (focus) {
      const pt = focusBox();
      if (pt) {
        ctx.strokeStyle = COLORS.fg;
        ctx.lineWidth = 2;
        ctx.strokeRect(pt.x0 - 2, pt.y - top + 1, pt.x1 - pt.x0 + 4, ROW - 2);
      }
    }
    section.dataset.drawnBars = String(drawnBars);
    drawAxis();
  }

  function drawRow(ctx, r, y) {
    const row = rows[r];
    const p = procs[row.p];
    if (highlighted.has(r)) { ctx.fillStyle = COLORS.mark; ctx.fillRect(0, y, width, ROW); }
    else if (r % 2) { ctx.fillStyle = COLORS.band; ctx.fillRect(0, y, width, ROW); }
    if (row.kind === "group") {
      ctx.fillStyle = COLORS.fg;
      ctx.font = "bold 12px system-ui, sans-serif";
      ctx.fillText(row.text, 6, y + ROW / 2 + 1);
      ctx.font = "12px system-ui, sans-serif";
      ctx.fillStyle = COLORS.rule;
      ctx.fillRect(0, y + ROW - 1, width, 1);
      return;
    }
    const range = p.ranges.get(row.key) || [0, 0];
    ctx.fillStyle = COLORS.muted;
    const label = row.kind === "lane"
      ? "connection " + p.lanes[row.key][1] + " · " + (range[1] - range[0]) + " req"
      : "failed to connect / no connection";
    ctx.fillText(label, 14, y + ROW / 2 + 1, GUTTER - 20);
    ctx.save();
    ctx.beginPath();
    ctx.rect(GUTTER, y, width - GUTTER, ROW);
    ctx.clip();
    let ready = -Infinity;
    if (row.kind === "lane") {
      const lane = laneTimes(row);
      ready = lane.ready;
      ctx.fillStyle = COLORS.idle;
      ctx.fillRect(X(lane.ready), y + ROW / 2 - 1, Math.max(X(lane.closed) - X(lane.ready), 1), 2);
      drawSteps(ctx, p, lane.steps, y, lane.opened, lane.ready);
      if (lane.end !== "open at exit") {
        ctx.fillStyle = END_COLORS[lane.end] || COLORS.end;
        ctx.fillRect(X(lane.closed) - 1, y + 1, 3, ROW - 2);
      }
    } else {
      for (const fi of p.failedOf[row.g]) {
        const f = p.failed[fi];
        const s = ms(p, f[1]), e = ms(p, f[2]);
        drawSteps(ctx, p, f[5], y, s, e);
        ctx.strokeStyle = COLORS.error;
        ctx.lineWidth = 1.5;
        ctx.strokeRect(X(s), y + 2.5, Math.max(X(e) - X(s), 2), ROW - 5);
      }
    }
    drawBars(ctx, p, range, y, ready);
    ctx.restore();
  }

  function drawSteps(ctx, p, steps, y, from, to) {
    if (!steps.length && to > from) {
      ctx.fillStyle = COLORS.setup;
      ctx.fillRect(X(from), y + 4, Math.max(X(to) - X(from), 1), ROW - 8);
    }
    for (let k = 0; k < steps.length; k += 3) {
      const s = ms(p, steps[k + 1]), e = ms(p, steps[k + 2]);
      ctx.fillStyle = stepColor(steps[k]);
      ctx.fillRect(X(s), y + 4, Math.max(X(e) - X(s), 1), ROW - 8);
    }
  }

  function drawBars(ctx, p, range, y, ready) {
    let bucket = -1, count = 0, errors = 0;
    const flush = () => {
      if (!count) return;
      ctx.globalAlpha = Math.min(1, 0.45 + count * 0.12);
      ctx.fillStyle = errors ? COLORS.error : COLORS.reused;
      ctx.fillRect(bucket, y + 3, 1, ROW - 6);
      ctx.globalAlpha = 1;
      drawnBars += count;
      count = errors = 0;
    };
    const right = T(width);
    for (let i = firstEndingAfter(p, range[0], range[1], v0); i < range[1]; i++) {
      const [s, e] = barSpan(p, i, ready);
      if (s > right) break;
      const x0 = X(s), x1 = X(e);
      const kind = barKind(p, i);
      if (x1 - x0 >= 1) {
        flush();
        ctx.fillStyle = COLORS[kind];
        ctx.fillRect(x0, y + 3, x1 - x0, ROW - 6);
        drawnBars += 1;
      } else {
        const px = Math.floor(x0);
        if (px !== bucket) { flush(); bucket = px; }
        count += 1;
        if (kind === "error") errors += 1;
      }
    }
    flush();
  }

  function niceStep(span, target) {
    const raw = span / target;
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 5, 10]) if (m * power >= raw) return m * power;
    return 10 * power;
  }

  function formatMs(t, step) {
    if (step >= 1000) return (t / 1000).toFixed(step >= 10000 ? 0 : 1) + " s";
    if (step >= 1) return t.toFixed(0) + " ms";
    return t.toFixed(2) + " ms";
  }

  function drawAxis() {
    const ctx = axis.getContext("2d");
    ctx.clearRect(0, 0, width, 24);
    ctx.font = "11px system-ui, sans-serif";
    ctx.textBaseline = "top";
    ctx.fillStyle = COLORS.muted;
    const step = niceStep(v1 - v0, Math.max(plotWidth() / 110, 2));
    for (let t = Math.ceil(v0 / step) * step; t <= v1; t += step) {
      const x = X(t);
      ctx.fillRect(x, 16, 1, 8);
      ctx.fillText(formatMs(t, step), x + 3, 3);
    }
    const start = new Date(t0).toISOString().replace("T", " ").replace("Z", " UTC");
    axisLabel.textContent = "time since the run's first connection, " + start;
  }

  // --- what is under the pointer -----------------------------------------------------------------
  function hit(r, t, tol) {
    const row = rows[r];
    if (!row || row.kind === "group") return null;
    const p = procs[row.p];
    const range = p.ranges.get(row.key) || [0, 0];
    const lane = laneTimes(row);
    const ready = lane ? lane.ready : -Infinity;
    let best = -1, bestDistance = Infinity;
    for (let i = firstEndingAfter(p, range[0], range[1], t - tol); i < range[1]; i++) {
      const [s, e] = barSpan(p, i, ready);
      if (s > t + tol) break;
      const distance = t < s ? s - t : t > e ? t - e : 0;
      if (distance < bestDistance) { best = i; bestDistance = distance; }
    }
    if (best >= 0) return {r, i: best};
    if (lane) {
      if (Math.abs(t - lane.closed) <= tol && lane.end !== "open at exit") return {r, i: -2};
      if (t >= lane.opened - tol && t <= lane.closed + tol) return {r, i: -1};
      return null;
    }
    for (const fi of p.failedOf[row.g]) {
      const f = p.failed[fi];
      if (t >= ms(p, f[1]) - tol && t <= ms(p, f[2]) + tol) return {r, i: -3 - fi};
    }
    return null;
  }

  const fmt = (v) => (v < 10 ? v.toFixed(2) : v < 1000 ? v.toFixed(1) : v.toFixed(0)) + " ms";

  function describe(h) {
    const row = rows[h.r];
    const p = procs[row.p];
    const lines = [];
    const group = p.groups[row.g];
    if (h.i >= 0) {
      const b = p.bars, i = h.i;
      const s = ms(p, b.start[i]), e = ms(p, b.start[i] + b.duration[i]);
      lines.push(p.s(b.label[i]) + " · attempt " + b.attempt[i]);
      const url = b.url.length ? p.urls[b.url[i]] : "";
      lines.push(p.s(b.method[i]) + " " + (url || group[0]));
      const status = b.status[i] ? "status " + b.status[i] : "no response";
      const error = p.s(b.error[i]);
      lines.push(status + (error && error !== String(b.status[i]) ? " · error " + error : ""));
      lines.push("duration " + fmt(e - s) + " · started at " + fmt(s));
      if (row.kind === "lane") {
        const lane = p.lanes[row.key];
        const how = b.reused[i] ? "reused" : "new connection (" + (p.s(b.reason[i]) || "?") + ")";
        lines.push("connection " + lane[1] + ", request " + (b.number[i] || "?") + " on it · " + how);
      } else {
        lines.push("no connection: " + (p.s(b.reason[i]) ? "opening one failed (" + p.s(b.reason[i]) + ")" : "none was handed out"));
      }
      if (b.idle[i] >= 0) lines.push("idle before: " + fmt(b.idle[i] / 1000));
      if (b.wait[i] > 0) lines.push("waited for the pool: " + fmt(b.wait[i] / 1000));
      if (b.trace.length && b.trace[i] >= 0) lines.push("trace " + hex(p.s(b.trace[i])));
      if (b.span.length && b.span[i] !== -1) lines.push("span " + hex(b.span[i]));
    } else if (h.i <= -3) {
      const f = p.failed[-3 - h.i];
      lines.push("connection to " + group[0] + " failed: " + (p.s(f[4]) || "error"));
      lines.push("why it was opened: " + p.s(f[3]) + " · " + fmt((f[2] - f[1]) / 1000));
      for (let k = 0; k < f[5].length; k += 3) {
        lines.push(f[5][k] + " " + fmt((f[5][k + 2] - f[5][k + 1]) / 1000));
      }
    } else {
      const lane = laneTimes(row);
      const range = p.ranges.get(row.key) || [0, 0];
      lines.push("connection " + p.lanes[row.key][1] + " to " + group[0] + " · pool " + group[1]);
      lines.push("opened (" + (lane.reason || "before conntrace") + ") at " + fmt(lane.opened) +
                 "; " + (range[1] - range[0]) + " request(s)");
      for (let k = 0; k < lane.steps.length; k += 3) {
        lines.push(lane.steps[k] + " " + fmt((lane.steps[k + 2] - lane.steps[k + 1]) / 1000));
      }
      lines.push("ended: " + lane.end + " at " + fmt(lane.closed) + " (open " + fmt(lane.closed - lane.ready) + ")");
      if (lane.detail) lines.push(lane.detail);
    }
    if (procs.length > 1) lines.push("pid " + p.pid + " · " + p.program);
    return lines.join("\n");
  }

  function show(h, clientX, clientY) {
    if (!h) { tip.hidden = true; return; }
    tip.textContent = describe(h);
    tip.hidden = false;
    const w = tip.offsetWidth, hh = tip.offsetHeight;
    tip.style.left = Math.min(clientX + 14, window.innerWidth - w - 4) + "px";
    tip.style.top = (clientY + 16 + hh > window.innerHeight ? clientY - hh - 10 : clientY + 16) + "px";
  }

  plot.addEventListener("mousemove", (event) => {
    const rect = plot.getBoundingClientRect();
    const x = event.clientX - rect.left, y = event.clientY - rect.top;
    if (x < GUTTER) { show(null); return; }
    const r = Math.floor((y + box.scrollTop) / ROW);
    const tol = (v1 - v0) / plotWidth() * MIN_TOL;
    show(hit(r, T(x), tol), event.clientX, event.clientY);
  });
  plot.addEventListener("mouseleave", () => show(null));

  // --- keyboard: a focused bar shows what hovering shows ---------------------------------------
  function focusBox() {
    if (!focus) return null;
    const row = rows[focus.r];
    const p = procs[row.p];
    const lane = laneTimes(row);
    let s, e;
    if (focus.i >= 0) [s, e] = barSpan(p, focus.i, lane ? lane.ready : -Infinity);
    else if (focus.i <= -3) { const f = p.failed[-3 - focus.i]; s = ms(p, f[1]); e = ms(p, f[2]); }
    else { s = lane.opened; e = lane.closed; }
    return {x0: X(s), x1: Math.max(X(e), X(s) + 1), y: focus.r * ROW, s, e};
  }

  function firstOf(r) {
    const row = rows[r];
    const p = procs[row.p];
    const range = p.ranges.get(row.key);
    if (range) return range[0];
    if (row.kind === "failed") return -3 - p.failedOf[row.g][0];
    return -1;
  }

  function moveFocus(next) {
    focus = next;
    const box_ = focusBox();
    if (box_.y < box.scrollTop || box_.y + ROW > box.scrollTop + height) {
      box.scrollTop = Math.max(box_.y - height / 3, 0);
    }
    if (box_.x1 < GUTTER || box_.x0 > width - RIGHT) {
      const span = v1 - v0;
      v0 = box_.s - span / 3; v1 = v0 + span;
    }
    draw();
    const after = focusBox();
    const rect = plot.getBoundingClientRect();
    const text = describe(focus);
    show(focus, rect.left + Math.min(after.x1, width - 40), rect.top + after.y - box.scrollTop + ROW);
    said.textContent = text;
  }

  plot.addEventListener("focus", () => {
    if (!focus) {
      const r = rows.findIndex((row) => row.kind !== "group");
      if (r >= 0) moveFocus({r, i: firstOf(r)});
    } else moveFocus(focus);
  });
  plot.addEventListener("blur", () => show(null));
  plot.addEventListener("keydown", (event) => {
    if (!focus) return;
    const row = rows[focus.r];
    const p = procs[row.p];
    const range = p.ranges.get(row.key) || [0, 0];
    let next = null;
    if (event.key === "ArrowRight" && focus.i >= 0 && focus.i + 1 < range[1]) next = {r: focus.r, i: focus.i + 1};
    else if (event.key === "ArrowLeft" && focus.i > range[0]) next = {r: focus.r, i: focus.i - 1};
    else if (event.key === "ArrowLeft" && focus.i === range[0] && row.kind === "lane") next = {r: focus.r, i: -1};
    else if (event.key === "ArrowRight" && focus.i === -1 && range[1] > range[0]) next = {r: focus.r, i: range[0]};
    else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      const d = event.key === "ArrowDown" ? 1 : -1;
      for (let r = focus.r + d; r >= 0 && r < rows.length; r += d) {
        if (rows[r].kind !== "group") { next = {r, i: firstOf(r)}; break; }
      }
    } else if (event.key === "Escape") { show(null); return; }
    if (next) { event.preventDefault(); moveFocus(next); }
  });

  // --- zoom and pan ------------------------------------------------------------------------------
  function zoom(factor, around) {
    const span = (v1 - v0) * factor;
    const c = around === undefined ? (v0 + v1) / 2 : around;
    const share = (c - v0) / (v1 - v0);
    v0 = c - span * share; v1 = v0 + span;
    schedule();
  }
  document.getElementById("zoom-in").addEventListener("click", () => zoom(0.5));
  document.getElementById("zoom-out").addEventListener("click", () => zoom(2));
  document.getElementById("zoom-fit").addEventListener("click", () => { v0 = 0; v1 = runEnd * 1.02; schedule(); });
  plot.addEventListener("wheel", (event) => {
    const rect = plot.getBoundingClientRect();
    if (event.ctrlKey || event.metaKey) {
      event.preventDefault();
      zoom(event.deltaY > 0 ? 1.25 : 0.8, T(event.clientX - rect.left));
    } else if (event.shiftKey || Math.abs(event.deltaX) > Math.abs(event.deltaY)) {
      event.preventDefault();
      const shift = (event.deltaX || event.deltaY) / plotWidth() * (v1 - v0);
      v0 += shift; v1 += shift;
      schedule();
    }
  }, {passive: false});
  box.addEventListener("scroll", schedule);
  window.addEventListener("resize", resize);

  // --- findings and hosts point at their lanes -------------------------------------------------
  function select(rowList, link) {
    highlighted.clear();
    for (const r of rowList) highlighted.add(r);
    document.querySelectorAll(".finding.active").forEach((el) => el.classList.remove("active"));
    if (link && link.closest(".finding")) link.closest(".finding").classList.add("active");
    if (rowList.length) {
      const firstRow = rowList.reduce((a, b) => Math.min(a, b));
      const header = rows[firstRow - 1] && rows[firstRow - 1].kind === "group" ? firstRow - 1 : firstRow;
      box.scrollTop = header * ROW;
    }
    section.dataset.highlighted = [...highlighted].sort((a, b) => a - b).join(" ");
    draw();
  }

  function rowsOfFinding(link) {
    const pid = Number(link.dataset.pid);
    const p = procs.find((q) => q.pid === pid);
    if (!p) return [];
    // "0..3 7 -2": runs of lanes, and rows of failed connections (negative).
    const found = [];
    for (const run of (link.dataset.lanes || "").split(" ").filter(Boolean)) {
      const [a, b] = run.split("..").map(Number);
      for (let lane = a; lane <= (b === undefined ? a : b); lane++) {
        const r = p.rowOf.get(lane);
        if (r !== undefined) found.push(r);
      }
    }
    return found;
  }

  function rowsOfHost(target) {
    const found = [];
    rows.forEach((row, r) => { if (row.kind !== "group" && row.target === target) found.push(r); });
    return found;
  }

  document.querySelectorAll("a.finding-link").forEach((link) => {
    link.addEventListener("click", (event) => { event.preventDefault(); select(rowsOfFinding(link), link); });
  });
  document.querySelectorAll("a.host").forEach((link) => {
    link.addEventListener("click", (event) => { event.preventDefault(); select(rowsOfHost(link.dataset.target), link); });
  });

  // What the page drew, for people scripting it (and for conntrace's own tests).
  window.conntraceTimeline = {
    rows, laneCount, barCount,
    drawnBars: () => drawnBars,
    highlighted: () => [...highlighted].sort((a, b) => a - b),
    rowsOfHost,
    barsOf(r) {
      const range = procs[rows[r].p].ranges.get(rows[r].key);
      return range ? range[1] - range[0] : 0;
    },
    endOf: (r) => laneTimes(rows[r]).end,
    // The middle of bar k of row r, in page coordinates, scrolled into view.
    barPoint(r, k) {
      const p = procs[rows[r].p];
      const range = p.ranges.get(rows[r].key);
      focus = {r, i: range[0] + k};
      moveFocus(focus);
      focus = null;
      show(null);
      const lane = laneTimes(rows[r]);
      const [s, e] = barSpan(p, range[0] + k, lane ? lane.ready : -Infinity);
      const rect = plot.getBoundingClientRect();
      draw();
      return {x: rect.left + (X(s) + X(e)) / 2, y: rect.top + r * ROW - box.scrollTop + ROW / 2};
    },
  };
  resize();
  section.dataset.ready = "1";
})();
