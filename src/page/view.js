"use strict";
// One movie's scenes: summary, video with chapters, scene strip and the
// boundary-probability chart. `lgssView(root, view)` draws `view` (the JSON
// `lgss segment --html` embeds; `lgss serve`'s page builds the same from the
// API's answer) into `root`. Only DOM APIs and textContent: nothing in the
// data is ever parsed as HTML.

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"];
const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

/** `HH:MM:SS.mmm` of a time in seconds (lgss's timecodes). */
function clock(seconds) {
  const ms = Math.round(seconds * 1000);
  const pad = (n, w) => String(n).padStart(w, "0");
  return `${pad(Math.floor(ms / 3600000), 2)}:${pad(Math.floor(ms / 60000) % 60, 2)}:${pad(Math.floor(ms / 1000) % 60, 2)}.${pad(ms % 1000, 3)}`;
}

/** The rule that decided the cuts, in words, from the segmentation's fields. */
function ruleText(seg) {
  const g = seg.global;
  if (seg.rule !== "global" || !g) return `threshold rule: a cut where p ≥ ${seg.threshold}`;
  let s = `global grouping: τ ${g.threshold}, γ ${g.coherence}`;
  if (g.length_prior) s += `, λ ${g.length_prior.weight}`;
  if (g.max_scene_shots) s += `, ≤ ${g.max_scene_shots} shots a scene`;
  return s;
}

function lgssView(root, view) {
  const started = performance.now();
  const seg = view.segmentation;
  const fps = seg.fps;
  const ends = seg.shot_end_frame;
  const probs = seg.model_probabilities || seg.boundary_probabilities;
  const scenes = seg.scenes;
  const duration = (ends[ends.length - 1] + 1) / fps;
  const boundaryTime = (b) => (ends[b] + 1) / fps;
  const sceneStart = (s) => s.first_frame / fps;
  const cutAfter = new Set(scenes.slice(0, -1).map((s) => s.last_shot));
  root.replaceChildren();

  // Summary.
  root.append(el("h1", {}, seg.imdb_id));
  const summary = el("dl", { class: "summary" });
  const item = (k, v) => {
    const d = el("div");
    d.append(el("dt", {}, k), el("dd", {}, v));
    summary.append(d);
  };
  item("shots", String(seg.n_shots));
  item("scenes", String(scenes.length));
  item("length", clock(duration));
  item("runtime", seg.runtime);
  if (view.model) item("model", view.model);
  item("rule", ruleText(seg));
  item("fps", String(fps));
  if (view.scores) {
    for (const k of ["AP", "Miou", "Precision", "Recall", "F1"]) item(k, view.scores[k].toFixed(4));
  } else {
    item("scores", "no ground truth");
  }
  root.append(summary);

  // Video with the scenes as chapters.
  let video = null;
  if (view.media) {
    const player = el("div", { class: "player" });
    video = el("video", { controls: "", preload: "metadata", src: view.media });
    if (view.chapters) {
      const url = "data:text/vtt;charset=utf-8," + encodeURIComponent(view.chapters);
      video.append(el("track", { kind: "chapters", label: "Scenes", srclang: "en", default: "", src: url }));
    }
    player.append(video);
    root.append(player);
  }

  // Scene strip.
  root.append(el("h2", {}, "Scenes"));
  const strip = el("div", { class: "strip", role: "list" });
  const blocks = scenes.map((s, k) => {
    const b = el("button", { class: "scene", type: "button", "data-scene": String(k), role: "listitem" });
    const thumb = view.thumbnails && view.thumbnails[k];
    if (thumb) b.append(el("img", { src: thumb, alt: `scene ${k}`, loading: "lazy" }));
    b.append(
      el("div", { class: "name" }, `Scene ${k}`),
      el("div", { class: "span" }, `${s.start} – ${s.end}`),
      el("div", { class: "meta" }, `shots ${s.first_shot}–${s.last_shot} · conf ${s.confidence.toFixed(2)}`),
    );
    strip.append(b);
    return b;
  });
  root.append(strip);

  // Chart: probability curve, threshold, predicted and true scenes.
  root.append(el("h2", {}, "Boundary probability"));
  const chart = el("div", { class: "chart" });
  const tip = el("div", { class: "tip" });
  const plot = svg("svg", { role: "img" });
  chart.append(plot, tip);
  root.append(chart);
  // Drawn at the width it gets, one unit a pixel, so text and points keep their shape.
  const W = Math.round(plot.getBoundingClientRect().width) || 1200, H = 300, L = 40, R = 12, T = 10, PH = 190;
  const bandY = T + PH + 22, bandH = 20, truthY = bandY + bandH + 18;
  plot.setAttribute("viewBox", `0 0 ${W} ${H}`);
  plot.setAttribute("aria-label", "boundary probability by time, with the scenes below");
  const x = (t) => L + (t / duration) * (W - L - R);
  const y = (p) => T + (1 - p) * PH;
  const axis = svg("g", { class: "axis" });
  for (const p of [0, 0.25, 0.5, 0.75, 1]) {
    axis.append(svg("line", { x1: L, x2: W - R, y1: y(p), y2: y(p), class: "grid" }));
    const t = svg("text", { x: L - 6, y: y(p) + 4, "text-anchor": "end" });
    t.textContent = String(p);
    axis.append(t);
  }
  const ticks = 8;
  for (let i = 0; i <= ticks; i++) {
    // The end labels stay inside the chart.
    const anchor = i === 0 ? "start" : i === ticks ? "end" : "middle";
    const t = svg("text", { x: x((duration * i) / ticks), y: T + PH + 14, "text-anchor": anchor });
    t.textContent = clock((duration * i) / ticks).replace(/\.\d+$/, "");
    axis.append(t);
  }
  plot.append(axis);
  const bands = svg("g");
  const bandRects = scenes.map((s, k) => {
    const r = svg("rect", {
      class: "band",
      x: x(sceneStart(s)),
      y: bandY,
      width: Math.max(0.5, x((s.last_frame + 1) / fps) - x(sceneStart(s))),
      height: bandH,
      fill: PALETTE[k % PALETTE.length],
      "data-scene": String(k),
    });
    bands.append(r);
    return r;
  });
  const lbl = (text, yy) => {
    const t = svg("text", { x: 2, y: yy + 14, class: "label" });
    t.textContent = text;
    return t;
  };
  bands.append(lbl("pred", bandY));
  if (view.truth) {
    view.truth.forEach((s, k) => {
      bands.append(svg("rect", {
        class: "truth",
        x: x(sceneStart(s)),
        y: truthY,
        width: Math.max(0.5, x((s.last_frame + 1) / fps) - x(sceneStart(s))),
        height: bandH,
        fill: k % 2 ? "#9aa3b2" : "#c9ced8",
      }));
    });
    bands.append(lbl("truth", truthY));
  }
  plot.append(bands);
  plot.append(svg("line", { class: "threshold", x1: L, x2: W - R, y1: y(seg.threshold), y2: y(seg.threshold) }));
  const xs = probs.map((_, b) => x(boundaryTime(b)));
  plot.append(svg("polyline", {
    class: "curve",
    points: probs.map((p, b) => `${xs[b].toFixed(2)},${y(p).toFixed(2)}`).join(" "),
  }));
  const points = svg("g");
  const dots = probs.map((p, b) => {
    const c = svg("circle", {
      class: cutAfter.has(b) ? "point cut" : "point",
      cx: xs[b],
      cy: y(p),
      r: probs.length > 600 ? 1.6 : 3,
      "data-boundary": String(b),
      "data-p": String(p),
    });
    points.append(c);
    return c;
  });
  plot.append(points);
  const cursor = svg("line", { class: "cursor", y1: T, y2: truthY + bandH, x1: L, x2: L, visibility: video ? "visible" : "hidden" });
  plot.append(cursor);
  const legend = el("p", { class: "legend" },
    "Curve: the model's probability of a scene boundary after each shot (red: a cut was made there). " +
    "Dashed: the threshold. Bands: predicted scenes" + (view.truth ? ", and the ground truth beneath" : "") +
    ". Click a scene or a point to go there; ←/→ move scene to scene.");
  root.append(legend);

  // Interaction.
  let current = -1;
  const sceneOfFrame = (f) => {
    let lo = 0, hi = scenes.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (scenes[mid].first_frame <= f) lo = mid; else hi = mid - 1;
    }
    return lo;
  };
  const highlight = (k) => {
    if (k === current) return;
    if (current >= 0) {
      blocks[current].classList.remove("current");
      bandRects[current].classList.remove("current");
      blocks[current].removeAttribute("aria-current");
    }
    current = k;
    blocks[k].classList.add("current");
    blocks[k].setAttribute("aria-current", "true");
    bandRects[k].classList.add("current");
    const sr = strip.getBoundingClientRect(), br = blocks[k].getBoundingClientRect();
    if (br.left < sr.left || br.right > sr.right) strip.scrollLeft += br.left - sr.left - sr.width / 2 + br.width / 2;
    root.dataset.currentScene = String(k);
  };
  const goTime = (t, k) => {
    highlight(k);
    if (video) video.currentTime = t;
    cursor.setAttribute("x1", x(t));
    cursor.setAttribute("x2", x(t));
  };
  const goScene = (k) => goTime(sceneStart(scenes[k]), k);
  blocks.forEach((b, k) => b.addEventListener("click", () => goScene(k)));
  bandRects.forEach((r, k) => r.addEventListener("click", () => goScene(k)));
  const nearest = (clientX) => {
    const box = plot.getBoundingClientRect();
    const vx = ((clientX - box.left) / box.width) * W;
    let lo = 0, hi = xs.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (xs[mid] < vx) lo = mid + 1; else hi = mid;
    }
    if (lo > 0 && vx - xs[lo - 1] < xs[lo] - vx) lo -= 1;
    return lo;
  };
  let hovered = null;
  plot.addEventListener("mousemove", (e) => {
    if (!xs.length) return;
    const box = plot.getBoundingClientRect();
    if (e.clientY - box.top > ((T + PH + 4) / H) * box.height) {
      tip.style.display = "none";
      return;
    }
    const b = nearest(e.clientX);
    if (hovered !== null) dots[hovered].classList.remove("hover");
    hovered = b;
    dots[b].classList.add("hover");
    const cut = cutAfter.has(b) ? " · cut" : "";
    tip.textContent = `after shot ${b} · ${clock(boundaryTime(b))} · p ${probs[b].toFixed(4)}${cut}`;
    tip.style.display = "block";
    const cb = chart.getBoundingClientRect();
    const px = box.left - cb.left + (xs[b] / W) * box.width;
    tip.style.left = `${Math.min(px + 10, cb.width - tip.offsetWidth - 4)}px`;
    tip.style.top = `${box.top - cb.top + (y(probs[b]) / H) * box.height - 30}px`;
  });
  plot.addEventListener("mouseleave", () => {
    tip.style.display = "none";
  });
  plot.addEventListener("click", (e) => {
    if (e.target.classList.contains("band") || !xs.length) return;
    const b = nearest(e.clientX);
    goTime(boundaryTime(b), sceneOfFrame(ends[b] + 1));
  });
  if (video) {
    video.addEventListener("timeupdate", () => {
      const t = video.currentTime;
      highlight(sceneOfFrame(Math.floor(t * fps + 1e-6)));
      cursor.setAttribute("x1", x(t));
      cursor.setAttribute("x2", x(t));
    });
  }
  const onKey = (e) => {
    if (e.altKey || e.ctrlKey || e.metaKey || /^(INPUT|TEXTAREA|SELECT)$/.test(e.target.tagName)) return;
    if (e.key !== "ArrowRight" && e.key !== "ArrowLeft") return;
    e.preventDefault();
    const k = Math.max(0, Math.min(scenes.length - 1, current + (e.key === "ArrowRight" ? 1 : -1)));
    goScene(k);
    blocks[k].focus({ preventScroll: true });
  };
  if (root._lgssKeys) document.removeEventListener("keydown", root._lgssKeys);
  root._lgssKeys = onKey;
  document.addEventListener("keydown", onKey);
  highlight(0);
  root.dataset.renderMs = (performance.now() - started).toFixed(1);
  root.dataset.ready = "true";
}
