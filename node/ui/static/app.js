// goblocks operator page: polls this node's /admin/ring and /admin/cluster
// and redraws the ring, the members and the migration state.
//
// Rules kept here: text goes into the DOM only as text nodes (never as
// markup), nothing is fetched from another origin, and no inline style or
// eval is used (the page's Content-Security-Policy forbids them).
"use strict";

(() => {
  const POLL_MS = 1500;
  const TIMEOUT_MS = 4000;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const PALETTE = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1",
    "#76b7b2", "#edc948", "#ff9da7", "#9c755f", "#bab0ac",
  ];

  // A node keeps the colour it was first given, so colours do not shift
  // when a member joins or leaves while the page is open.
  const colours = new Map();
  function colourOf(name) {
    if (!colours.has(name)) {
      const i = colours.size;
      colours.set(name, i < PALETTE.length ? PALETTE[i] : `hsl(${(i * 137.5) % 360} 55% 50%)`);
    }
    return colours.get(name);
  }

  // build makes an element; attrs are set as attributes except "text"
  // (textContent). Children may be nodes, strings (as text) or null.
  function build(ns, tag, attrs, children) {
    const e = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") e.textContent = String(v);
      else e.setAttribute(k, String(v));
    }
    for (const c of children) {
      if (c === null || c === undefined || c === false) continue;
      e.append(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    }
    return e;
  }
  const el = (tag, attrs, ...children) => build(null, tag, attrs, children);
  const svg = (tag, attrs, ...children) => build(SVG_NS, tag, attrs, children);
  const $ = (id) => document.getElementById(id);

  function swatch(name) {
    const s = el("span", { class: "swatch", "aria-hidden": "true" });
    s.style.backgroundColor = colourOf(name); // CSSOM, allowed by the CSP
    return s;
  }

  function badge(kind, text, title) {
    return el("span", { class: `badge ${kind}`, title, text });
  }

  const pct = (f) => `${(100 * (f || 0)).toFixed(1)}%`;
  const count = (n) => Number(n || 0).toLocaleString("en-US");
  function bytes(n) {
    n = Number(n || 0);
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let u = 0;
    while (n >= 1024 && u < units.length - 1) { n /= 1024; u++; }
    return `${u === 0 ? n : n.toFixed(1)} ${units[u]}`;
  }

  // Tokens are decimal uint64 strings; a BigInt keeps all 64 bits, and the
  // top 53 of them give the position on the circle as a fraction in [0, 1).
  function position(token) {
    return Number(BigInt(token) >> 11n) / 2 ** 53;
  }

  // ---- ring ------------------------------------------------------------

  const CX = 210, CY = 210;

  function point(f, r) {
    const a = 2 * Math.PI * f; // 0 at the top, clockwise
    return [CX + r * Math.sin(a), CY - r * Math.cos(a)];
  }

  // arcPath is the clockwise arc from fraction a to fraction b.
  function arcPath(a, b, r) {
    let span = b - a;
    if (span <= 0) span += 1;
    const [x0, y0] = point(a, r);
    const [x1, y1] = point(b, r);
    return `M ${x0.toFixed(2)} ${y0.toFixed(2)} A ${r} ${r} 0 ${span > 0.5 ? 1 : 0} 1 ${x1.toFixed(2)} ${y1.toFixed(2)}`;
  }

  // drawRing draws one ring: each vnode's token is a dot, and the arc that
  // ends at it (the keys whose first owner it is) is in its node's colour.
  function drawRing(table, r, width, which) {
    const g = svg("g", { class: `ring ${which}`, "data-ring": which });
    const vnodes = (table.vnodes || []).map((v) => ({ node: v.node, token: v.token, f: position(v.token) }));
    vnodes.sort((x, y) => x.f - y.f);
    g.append(svg("circle", { cx: CX, cy: CY, r, class: "track", "stroke-width": width }));
    vnodes.forEach((v, i) => {
      const prev = vnodes[(i - 1 + vnodes.length) % vnodes.length];
      const label = `${v.node}: vnode at token ${v.token} (${which} ring)`;
      let shape;
      if (vnodes.length === 1) {
        shape = svg("circle", { cx: CX, cy: CY, r, fill: "none" });
      } else if (prev.f === v.f) {
        return; // a token collision: the arc belongs to the first vnode
      } else {
        shape = svg("path", { d: arcPath(prev.f, v.f, r), fill: "none" });
      }
      shape.setAttribute("stroke", colourOf(v.node));
      shape.setAttribute("stroke-width", width);
      shape.setAttribute("class", "arc");
      shape.append(svg("title", { text: label }));
      g.append(shape);
    });
    // Dots sit outside the current ring and inside the target ring, so
    // the two rings' dots never mix.
    const dotR = which === "target" ? r - width / 2 - 6 : r + width / 2 + 6;
    for (const v of vnodes) {
      const [x0, y0] = point(v.f, r - width / 2);
      const [x1, y1] = point(v.f, r + width / 2);
      g.append(svg("line", { x1: x0, y1: y0, x2: x1, y2: y1, class: "sep" }));
      const [dx, dy] = point(v.f, dotR);
      g.append(svg("circle", { cx: dx, cy: dy, r: 3.5, fill: colourOf(v.node), class: "vnode", "data-node": v.node },
        svg("title", { text: `${v.node}: token ${v.token}` })));
    }
    return g;
  }

  function renderRing(rs, cs) {
    const ring = rs.ring || { members: [], vnodes: [] };
    const target = rs.target;
    // Colours in name order on first sight, so a fresh page is predictable.
    const names = new Set([...ring.members.map((m) => m.name), ...(target ? target.members.map((m) => m.name) : [])]);
    [...names].sort().forEach(colourOf);

    const desc = target
      ? `Current ring of epoch ${rs.epoch} with ${ring.members.length} members (outer) and the target ring with ${target.members.length} members (inner) of the running migration.`
      : `Ring of epoch ${rs.epoch}: ${ring.members.length} members, ${ring.vnodes.length} vnodes.`;
    const fig = svg("svg", { viewBox: "0 0 420 420", role: "img", "aria-labelledby": "ring-title ring-desc", class: "ring-svg" },
      svg("title", { id: "ring-title", text: "Consistent-hash ring" }),
      svg("desc", { id: "ring-desc", text: desc }));
    fig.append(drawRing(ring, 170, 26, "current"));
    if (target) fig.append(drawRing(target, 118, 18, "target"));
    // 0 marks where token 0 sits; tokens grow clockwise.
    fig.append(svg("text", { x: CX, y: 12, class: "tick", "text-anchor": "middle", text: "0" }));
    const centre = svg("text", { x: CX, y: CY - 6, class: "centre", "text-anchor": "middle", text: `epoch ${rs.epoch}` });
    const sub = svg("text", { x: CX, y: CY + 16, class: "centre-sub", "text-anchor": "middle",
      text: target ? `migrating → ${target.members.length} members` : `${ring.members.length} members · ${ring.vnodes.length} vnodes` });
    fig.append(centre, sub);
    if (target) {
      fig.append(svg("text", { x: CX, y: CY + 34, class: "centre-sub", "text-anchor": "middle", text: "outer: current · inner: target" }));
    }
    $("ring-figure").replaceChildren(fig);

    const targetShare = new Map((target ? target.members : []).map((m) => [m.name, m]));
    const current = new Map(ring.members.map((m) => [m.name, m]));
    const items = [];
    for (const name of [...names].sort()) {
      const m = current.get(name);
      const t = targetShare.get(name);
      const share = m ? m.share : 0;
      const bar = el("span", { class: "bar", "aria-hidden": "true" }, el("span", { class: "fill" }));
      bar.firstChild.style.width = pct(share);
      bar.firstChild.style.backgroundColor = colourOf(name);
      let main = m ? `${pct(m.share)} of replicas` : "not in the current ring";
      if (target) main += t ? ` → ${pct(t.share)} in target` : " → leaves in target";
      const detail = m ? `${pct(m.primary_share)} as first owner · ${m.vnodes} vnodes` : `${t.vnodes} vnodes in target`;
      items.push(el("li", { "data-node": name },
        swatch(name),
        el("span", { class: "who" },
          el("strong", { class: "name", text: name }),
          el("span", { class: "addr", text: (m || t || {}).addr || "" })),
        bar,
        el("span", { class: "share" }, el("span", { text: main }), el("span", { class: "detail", text: detail }))));
    }
    $("ring-legend").replaceChildren(...items);
    $("ring-note").textContent = `Each arc ends at a vnode token and holds the keys that vnode's node owns first; ` +
      `replicas go to the next ${rs.rf - 1} distinct nodes clockwise (RF ${rs.rf}).`;
  }

  // ---- members -----------------------------------------------------------

  function renderMembers(rs, cs, stats) {
    const stat = new Map((stats || []).map((m) => [m.name, m]));
    const registered = new Map((cs.members || []).map((m) => [m.name, m]));
    const inRing = new Set(cs.ring_members || (rs.ring ? rs.ring.members.map((m) => m.name) : []));
    const inTarget = new Set(cs.target || []);
    const ringInfo = new Map((rs.ring ? rs.ring.members : []).map((m) => [m.name, m]));
    const names = [...new Set([...registered.keys(), ...inRing, ...inTarget])].sort();
    const rows = names.map((name) => {
      const m = registered.get(name) || ringInfo.get(name) || { name };
      let health;
      if (registered.has(name) && m.leaving) health = badge("warn", "leaving", "received SIGTERM; stays a transfer source until the ring without it commits");
      else if (registered.has(name)) health = badge("ok", "alive", "registered in ZooKeeper (its session is live)");
      else health = badge("bad", "no session", "in the ring but not registered: the node is down or partitioned");
      let ring = "no";
      if (inRing.has(name) && cs.migrating && !inTarget.has(name)) ring = "yes, leaving";
      else if (inRing.has(name)) ring = "yes";
      else if (inTarget.has(name)) ring = "joining";
      else if (cs.pending) ring = "waits for a round";
      const self = name === cs.node;
      const addr = m.addr || "";
      const addrCell = el("td", { class: "addr" });
      const link = peerLink(m);
      if (link && !self) {
        addrCell.append(el("a", { href: link, title: `open ${name}'s own page`, text: addr || link }));
      } else {
        addrCell.append(addr);
      }
      return el("tr", { "data-node": name },
        el("th", { scope: "row" }, swatch(name), el("span", { class: "name", text: name }), self ? el("span", { class: "self", text: "this node" }) : null),
        addrCell,
        el("td", {}, health),
        el("td", { text: ring }),
        el("td", { class: "num", text: m.vnodes ?? (ringInfo.get(name) || {}).vnodes ?? "—" }),
        blocksCell(self, cs, stat.get(name)));
    });
    $("members-body").replaceChildren(...rows);
  }

  // peerLink is a member's own page: at its public URL when it has one (the
  // lab publishes each node on a host port; its address is a container
  // IP), else at its address. Only http(s) URLs and plain host:port.
  function peerLink(m) {
    const pub = m.public_url || "";
    if (/^https?:\/\/[A-Za-z0-9.\-:[\]]+(\/[^\s"'<>]*)?$/.test(pub)) return pub.replace(/\/+$/, "") + "/ui";
    if (m.addr && /^[A-Za-z0-9.\-:[\]]+$/.test(m.addr)) return `http://${m.addr}/ui`;
    return "";
  }

  // Owned copies, and the stale ones (moved away, collected when the grace
  // period ends) after them; from /admin/members, which asks every member.
  function blocksCell(self, cs, st) {
    if (st && st.reachable) {
      const text = st.stale_blocks > 0 ? `${count(st.owned_blocks)} + ${count(st.stale_blocks)} stale` : count(st.owned_blocks);
      return el("td", { class: "num", title: "owned copies (+ stale copies awaiting collection)", text });
    }
    if (self) return el("td", { class: "num", title: "copies stored here, owned and stale", text: count(cs.blocks) });
    return el("td", { class: "num", title: st && st.error ? `not reachable from this node: ${st.error}` : "not reachable from this node", text: "—" });
  }

  // ---- migration -------------------------------------------------------

  function kv(pairs, cls) {
    const dl = el("dl", { class: cls || "kv" });
    for (const [k, v] of pairs) dl.append(el("div", {}, el("dt", { text: k }), el("dd", {}, v)));
    return dl;
  }

  function renderMigration(rs, cs) {
    const out = [];
    let state;
    if (cs.migrating) state = [badge("warn", "migrating"), ` round ${cs.round || "?"}: blocks move to the target ring; reads and writes go on.`];
    else if (cs.pending) state = [badge("warn", "pending"), " a membership change waits for the next round."];
    else state = [badge("ok", "idle"), " the ring matches the membership; no round runs."];
    if (cs.leaving) state.push(" This node is leaving.");
    out.push(el("p", { class: "state", id: "migration-state" }, ...state));

    if (cs.round) {
      const target = (cs.target || []).map((n) => el("span", { class: "chip" }, swatch(n), n));
      out.push(kv([["round", cs.round], ["target members", el("span", { class: "chips" }, ...target)]]));
    }
    if ((cs.participants || []).length) {
      const rows = cs.participants.map((p) => el("tr", { "data-node": p.name },
        el("th", { scope: "row" }, swatch(p.name), el("span", { class: "name", text: p.name })),
        el("td", {}, p.registered ? badge("ok", "registered") : badge("bad", "missing", "not registered: the round aborts if it stays away")),
        el("td", {}, p.ready ? badge("ok", "ready", "sent everything it had to send") : badge("warn", "sending")),
        el("td", { class: "num", text: count(p.sent_blocks) }),
        el("td", { class: "num", text: bytes(p.sent_bytes) })));
      out.push(el("table", { class: "grid" },
        el("caption", { text: "Participants of the round" }),
        el("thead", {}, el("tr", {}, ...["node", "registered", "ready", "sent blocks", "sent"].map((h, i) =>
          el("th", { scope: "col", class: i >= 3 ? "num" : null, text: h })))),
        el("tbody", {}, ...rows)));
    }

    const t = cs.transfer || {};
    const planned = Number(t.planned_blocks || 0), sent = Number(t.sent_blocks || 0);
    const prog = el("progress", { id: "transfer-progress", max: Math.max(planned, 1), value: planned ? Math.min(sent, planned) : 0,
      "aria-label": "blocks this node sent of those it planned to send" });
    const label = planned
      ? `${count(sent)} of ${count(planned)} blocks sent (${pct(sent / planned)}) · ${bytes(t.sent_bytes)}`
      : cs.migrating ? "nothing to send from this node" : "none";
    out.push(el("div", { class: "transfer" },
      // The driver keeps the last round's counts after it commits.
      el("h3", { text: `${cs.migrating ? "Transfer" : "Last transfer"} from ${cs.node || "this node"}` }),
      planned || cs.migrating ? prog : null,
      el("p", { class: "progress-label", text: label }),
      el("p", { class: "muted", text: `received by migration since start: ${count(t.received_blocks)} blocks (${bytes(t.received_bytes)})` })));
    $("migration").replaceChildren(...out);
  }

  function renderHistory(cs) {
    const out = [];
    const lr = cs.last_round;
    if (lr) {
      out.push(el("h3", { text: "Last committed round" }), kv([
        ["round", lr.id], ["epoch", String(lr.epoch)], ["took", `${Number(lr.seconds).toFixed(2)} s`],
        ["sent from here", `${count(lr.sent_blocks)} blocks · ${bytes(lr.sent_bytes)}`],
      ], "kv wide"));
    } else {
      out.push(el("h3", { text: "Last committed round" }), el("p", { class: "muted", text: "none since this node started" }));
    }
    out.push(el("p", { class: "muted", text: `rounds aborted by this node: ${count(cs.rounds_aborted)}` }));
    const gc = cs.gc || {};
    out.push(el("h3", { text: "Last GC pass" }), kv([
      ["scanned", count(gc.scanned)], ["marked stale", count(gc.marked_stale)], ["re-owned", count(gc.reowned)],
      ["collected", count(gc.collected)], ["tombstones purged", count(gc.tombstones_purged)], ["stale left", count(gc.stale)],
    ], "kv cols"));
    $("history").replaceChildren(...out);
  }

  function renderFacts(rs, cs) {
    $("fact-node").textContent = cs.node || rs.node || "?";
    $("fact-epoch").textContent = cs.view_epoch !== undefined && cs.view_epoch !== cs.epoch
      ? `${cs.epoch} (routing by ${cs.view_epoch})` : String(cs.epoch ?? rs.epoch);
    $("fact-rf").textContent = `RF ${rs.rf}`;
    $("fact-session").replaceChildren(cs.connected ? badge("ok", "connected") : badge("bad", "disconnected"));
    $("fact-blocks").textContent = count(cs.blocks);
    document.title = `goblocks · ${cs.node || rs.node}`;
  }

  // ---- polling -----------------------------------------------------------

  async function getJSON(path) {
    const resp = await fetch(path, { cache: "no-store", signal: AbortSignal.timeout(TIMEOUT_MS), headers: { Accept: "application/json" } });
    if (!resp.ok) throw new Error(`${path}: HTTP ${resp.status}`);
    return resp.json();
  }

  let lastOK = null;
  async function refresh() {
    try {
      // /admin/members is best effort: the page works without it.
      const [rs, cs, stats] = await Promise.all([getJSON("/admin/ring"), getJSON("/admin/cluster"), getJSON("/admin/members").catch(() => null)]);
      renderFacts(rs, cs);
      renderRing(rs, cs);
      renderMembers(rs, cs, stats);
      renderMigration(rs, cs);
      renderHistory(cs);
      lastOK = new Date();
      $("error").hidden = true;
      $("updated").textContent = `updated ${lastOK.toLocaleTimeString("en-GB")}`;
      document.body.dataset.loaded = "true";
    } catch (err) {
      const since = lastOK ? `; showing data from ${lastOK.toLocaleTimeString("en-GB")}` : "";
      $("error").textContent = `Cannot read this node's status (${err.message || err})${since}. Retrying…`;
      $("error").hidden = false;
    }
  }

  // The next poll starts only after the previous one ended, so a slow node
  // never has requests piling up; hidden tabs poll less.
  async function loop() {
    await refresh();
    setTimeout(loop, document.hidden ? 5 * POLL_MS : POLL_MS);
  }
  loop();
})();
