/* classcontrast explorer: the viewer of `explain --html`, `audit.html` and Jupyter output.
 *
 * Self-contained: the data (images as JPEG data URLs, maps as 8-bit codes tiled in grayscale PNG data
 * URLs) sits in a JSON script element next to the viewer's root; nothing is fetched. Maps are coloured
 * here (blue = against the target, white = 0, red = for it), so the colour scale, the opacity and the
 * shown contrast change without recomputation.
 */
(function () {
  "use strict";
  if (window.ClassContrastViewer) return;

  const NAMED = ["original", "mean", "max", "weighted", "probability"];

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (k === "class") node.className = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    }
    return node;
  }

  function loadImage(src) {
    return new Promise((resolve, reject) => {
      const img = new Image();
      img.onload = () => resolve(img);
      img.onerror = () => reject(new Error("image failed to decode"));
      img.src = src;
    });
  }

  function fmt(v) {
    if (v === 0) return "0";
    const a = Math.abs(v);
    return a >= 1000 || a < 0.001 ? v.toExponential(2) : v.toPrecision(3);
  }

  // bwr: blue (-1) -> white (0) -> red (+1), as matplotlib's "bwr"
  function colour(t) {
    t = t < -1 ? -1 : t > 1 ? 1 : t;
    return t < 0 ? [255 * (1 + t), 255 * (1 + t), 255] : [255, 255 * (1 - t), 255 * (1 - t)];
  }

  function fingerprint(canvas) {
    const d = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    let h = 0x811c9dc5;
    for (let i = 0; i < d.length; i += 3) { h ^= d[i]; h = Math.imul(h, 0x01000193) >>> 0; }
    return h.toString(16);
  }

  function area(b) { return (b[2] - b[0]) * (b[3] - b[1]); }

  class Viewer {
    constructor(root, data) {
      this.root = root;
      this.data = data;
      this.classes = data.classes || [];
      this.entries = new Map(data.entries.map((e) => [e.id, e]));
      this.images = new Map();
      this.atlases = new Map();
      this.renders = 0;
      const first = data.entries[0];
      this.state = {
        view: data.audit ? "overview" : "entry", pair: 0, list: data.entries.map((e) => e.id), index: 0,
        method: first ? Object.keys(first.methods)[0] : null, target: null, contrast: null,
        opacity: 0.9, shared: false,
      };
      if (first) this.resetEntry();
      root.addEventListener("keydown", (e) => this.key(e));
      this.render();
    }

    name(c) { return this.classes[c] !== undefined ? this.classes[c] : "class " + c; }
    entry() { return this.entries.get(this.state.list[this.state.index]); }

    image(key) {
      if (!this.images.has(key)) this.images.set(key, loadImage(this.data.images[key].src));
      return this.images.get(key);
    }

    // (codes, width) of a method's atlas, decoded once
    async codes(entry, method) {
      const key = entry.id + "\u0000" + method;
      if (!this.atlases.has(key)) {
        this.atlases.set(key, loadImage(entry.methods[method].atlas).then((img) => {
          const c = el("canvas", {width: img.width, height: img.height});
          const ctx = c.getContext("2d", {willReadFrequently: true});
          ctx.drawImage(img, 0, 0);
          const rgba = ctx.getImageData(0, 0, img.width, img.height).data;
          const codes = new Uint8Array(img.width * img.height);
          for (let i = 0; i < codes.length; i++) codes[i] = rgba[4 * i];
          return {codes, width: img.width};
        }));
      }
      return this.atlases.get(key);
    }

    // the map of (target, contrast) as values, with its own half-range
    async tile(entry, method, target, contrast) {
      const m = entry.methods[method];
      const j = entry.targets.indexOf(target);
      const c = m.contrasts.indexOf(contrast);
      if (j < 0 || c < 0) return null;
      const {codes, width} = await this.codes(entry, method);
      const scale = m.scales[j][c];
      const values = new Float32Array(m.tw * m.th);
      for (let y = 0; y < m.th; y++) {
        for (let x = 0; x < m.tw; x++) {
          values[y * m.tw + x] = (codes[(j * m.th + y) * width + c * m.tw + x] - 127) / 127 * scale;
        }
      }
      return {values, scale, tw: m.tw, th: m.th};
    }

    sharedScale(entry, method) {
      let s = 0;
      for (const row of entry.methods[method].scales) for (const v of row) s = Math.max(s, v);
      return s;
    }

    async paint(canvas, entry, method, target, contrast, scale) {
      const [img, t] = await Promise.all([this.image(entry.image), this.tile(entry, method, target, contrast)]);
      const ctx = canvas.getContext("2d", {willReadFrequently: true});
      ctx.clearRect(0, 0, canvas.width, canvas.height);
      ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
      if (!t) return;
      // the photo as a light grey backdrop, as the figures draw it: the map's red and blue never blend into a red
      // or blue object (0.25 + 0.6 x luminance)
      const photo = ctx.getImageData(0, 0, canvas.width, canvas.height);
      const d = photo.data;
      for (let i = 0; i < d.length; i += 4) {
        const grey = 63.75 + 0.6 * (0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2]);
        d[i] = grey; d[i + 1] = grey; d[i + 2] = grey;
      }
      ctx.putImageData(photo, 0, 0);
      const s = scale === undefined ? t.scale : scale;
      const off = el("canvas", {width: t.tw, height: t.th});
      const octx = off.getContext("2d");
      const px = octx.createImageData(t.tw, t.th);
      for (let i = 0; i < t.values.length; i++) {
        const z = s > 0 ? Math.max(-1, Math.min(1, t.values[i] / s)) : 0;
        const [r, g, b] = colour(z);
        // opacity grows with |value|, as in the figures (0 shows the photo: the map says nothing there)
        px.data[4 * i] = r; px.data[4 * i + 1] = g; px.data[4 * i + 2] = b;
        px.data[4 * i + 3] = Math.round(255 * Math.pow(Math.abs(z), 0.75));
      }
      octx.putImageData(px, 0, 0);
      ctx.save();
      ctx.globalAlpha = this.state.opacity;
      ctx.imageSmoothingEnabled = true;
      ctx.imageSmoothingQuality = "high";
      ctx.drawImage(off, 0, 0, canvas.width, canvas.height);
      ctx.restore();
    }

    contrastsFor(entry, method, target) {
      return entry.methods[method].contrasts.filter((k) => k !== "foil:" + target);
    }

    label(key, target) {
      if (key.startsWith("foil:")) return "rather than " + this.name(Number(key.slice(5)));
      return key;
    }

    question(key, target) {
      const t = this.name(target);
      if (key.startsWith("foil:")) return "Why " + t + " rather than " + this.name(Number(key.slice(5))) + "?";
      return {
        original: "What speaks for " + t + "? (its logit y_t alone, no contrast)",
        mean: "Why " + t + " rather than the average other class?",
        max: "Why " + t + " rather than its strongest rival?",
        weighted: "Why " + t + " rather than the other classes, weighted by their probability?",
        finer: "Why " + t + " rather than its nearest classes, weighted by their probability? (Finer-CAM, pytorch-grad-cam)",
        finer_mean: "Why " + t + " rather than the mean of its nearest classes? (Finer-CAM, torch-cam)",
        rest: "What speaks for " + t + ", logit minus cross-entropy? (ReST)",
        probability: "What raises p(" + t + ")? (p_t(1−p_t) × the weighted map)",
      }[key] || key;
    }

    resetEntry() {
      const e = this.entry();
      if (!e) return;
      if (!e.methods[this.state.method]) this.state.method = Object.keys(e.methods)[0];
      const keys = e.methods[this.state.method].contrasts;
      this.state.target = e.default.target;
      this.state.contrast = keys.includes(e.default.contrast) ? e.default.contrast
        : keys.includes("weighted") ? "weighted" : keys[0];
    }

    // keep the contrast when moving to another target or entry, where it exists
    settle() {
      const e = this.entry();
      if (!e.targets.includes(this.state.target)) this.state.target = e.default.target;
      if (!e.methods[this.state.method]) this.state.method = Object.keys(e.methods)[0];
      const keys = this.contrastsFor(e, this.state.method, this.state.target);
      if (!keys.includes(this.state.contrast)) this.state.contrast = keys.includes("weighted") ? "weighted" : keys[0];
    }

    set(patch) {
      Object.assign(this.state, patch);
      return this.render();
    }

    openEntry(list, index) {
      this.state.list = list;
      this.state.index = index;
      this.state.view = "entry";
      this.resetEntry();
      return this.render();
    }

    openPair(i) { return this.set({view: "pair", pair: i}); }

    back() {
      if (this.state.view === "entry" && this.data.audit) return this.set({view: "pair"});
      if (this.state.view === "pair") return this.set({view: "overview"});
      return null;
    }

    step(field, delta) {
      const s = this.state;
      if (field === "entry") {
        if (s.view === "pair") {
          const n = this.data.audit.pairs.length;
          return this.set({pair: (s.pair + delta + n) % n});
        }
        if (s.view !== "entry") return null;
        s.index = (s.index + delta + s.list.length) % s.list.length;
        this.settle();
        return this.render();
      }
      if (s.view !== "entry") return null;
      const e = this.entry();
      if (field === "target") {
        const i = e.targets.indexOf(s.target);
        s.target = e.targets[(i + delta + e.targets.length) % e.targets.length];
        this.settle();
      } else if (field === "contrast") {
        const keys = this.contrastsFor(e, s.method, s.target);
        s.contrast = keys[(keys.indexOf(s.contrast) + delta + keys.length) % keys.length];
      } else if (field === "method") {
        const ms = Object.keys(e.methods);
        s.method = ms[(ms.indexOf(s.method) + delta + ms.length) % ms.length];
        this.settle();
      }
      return this.render();
    }

    key(ev) {
      if (ev.target && ev.target.tagName === "INPUT") return;
      const k = ev.key;
      const acts = {
        ArrowRight: () => this.step("entry", 1), ArrowLeft: () => this.step("entry", -1),
        ArrowDown: () => this.step("target", 1), ArrowUp: () => this.step("target", -1),
        c: () => this.step("contrast", 1), C: () => this.step("contrast", -1),
        m: () => this.step("method", 1), s: () => this.set({shared: !this.state.shared}),
        "+": () => this.set({opacity: Math.min(1, +(this.state.opacity + 0.1).toFixed(2))}),
        "=": () => this.set({opacity: Math.min(1, +(this.state.opacity + 0.1).toFixed(2))}),
        "-": () => this.set({opacity: Math.max(0, +(this.state.opacity - 0.1).toFixed(2))}),
        Escape: () => this.back(), Backspace: () => this.back(),
        Enter: () => (this.state.view === "overview" && this.data.audit.pairs.length ? this.openPair(0) : null),
      };
      if (acts[k]) { ev.preventDefault(); acts[k](); }
    }

    async render() {
      const n = ++this.renders;
      const root = this.root;
      const view = this.state.view;
      const body = el("div", {class: "cc-body"});
      let done;
      if (view === "overview") done = this.overview(body);
      else if (view === "pair") done = this.pair(body);
      else done = this.explorer(body);
      const focused = root.contains(document.activeElement);
      root.replaceChildren(...[
        el("h1", {}, this.data.title || "classcontrast"),
        this.data.subtitle ? el("div", {class: "cc-sub"}, this.data.subtitle) : null,
        body,
      ].filter(Boolean));
      if (focused) root.focus({preventScroll: true});  // the clicked control is gone: keys still reach the viewer
      await done;
      if (n !== this.renders) return;  // a newer render took over
      root.dataset.view = view;
      const main = root.querySelector("canvas.cc-main");
      root.dataset.fingerprint = main ? fingerprint(main) : "";
      root.dataset.ready = "1";
      root.dispatchEvent(new CustomEvent("cc-rendered"));
    }

    overview(body) {
      const a = this.data.audit;
      const ml = !!a.multilabel;
      const acc = a.accuracy === null || a.accuracy === undefined ? "" :
        (ml ? ", exact label sets " : ", accuracy ") + (100 * a.accuracy).toFixed(1) + "%";
      body.append(el("div", {class: "cc-sub"}, a.n + " images" + acc + (ml ?
        " — multi-label: a label counts as predicted when σ(y) ≥ " + a.threshold + " (independent probabilities); " +
        "each pair is a label present but missed and a label predicted instead, in the same image" : a.labelled ? "" :
        " — no labels: each pair is an image's top-1 vs top-2, counted when p(top-2) / p(top-1) ≥ " + a.ambiguity)));
      const perLabel = ml && a.labels.length ? el("div", {}, el("h2", {}, "Per label"),
        el("table", {class: "cc-pairs cc-labels"},
          el("tr", {}, ["label", "present", "false positives", "false negatives", "precision", "recall"].map((h) =>
            el("th", {}, h))),
          a.labels.map((r) => el("tr", {}, el("td", {}, this.name(r.index)), el("td", {}, String(r.support)),
            el("td", {}, String(r.false_positives)), el("td", {}, String(r.false_negatives)),
            el("td", {}, r.precision === null ? "–" : r.precision.toFixed(2)),
            el("td", {}, r.recall === null ? "–" : r.recall.toFixed(2)))))) : null;
      if (!a.pairs.length) {
        body.append(el("p", {}, ml ? "No pairs: no image has a label missed while another is predicted instead." :
          a.labelled ? "No confused pairs: every image was classified correctly." :
          "No ambiguous pairs: no image's top-2 reaches the threshold."));
        if (perLabel) body.append(perLabel);
        return null;
      }
      body.append(el("div", {class: "cc-keys cc-hint"}, "Click a pair (or a framed cell) to open its images. " +
        "Keys: Enter opens the first pair, ←/→ move between pairs, Esc goes back."));
      const open = (i) => el("button", {class: "cc-open", onclick: (ev) => { ev.stopPropagation(); this.openPair(i); }},
        "open ›");
      const rows = a.pairs.map((p, i) => el("tr", {class: "cc-row", "data-pair": i, tabindex: "0",
          title: "open this pair", onclick: () => this.openPair(i)},
        el("td", {}, String(i + 1)),
        el("td", {}, this.name(a.labelled ? p.true_index : p.predicted_index)),
        el("td", {}, a.labelled ? "→" : "vs"),
        el("td", {}, this.name(a.labelled ? p.predicted_index : p.true_index)), el("td", {}, String(p.count)),
        el("td", {}, p.mean_p_predicted.toFixed(3)), el("td", {}, String(p.mistakes.length) + " / " + String(p.correct.length)),
        el("td", {}, open(i))));
      const table = el("table", {class: "cc-pairs"},
        el("tr", {}, el("th", {}, "#"), el("th", {}, ml ? "present, missed" : a.labelled ? "true" : "top-1"),
          el("th", {}, ""), el("th", {}, ml ? "predicted instead" : a.labelled ? "predicted" : "top-2"),
          el("th", {}, "images"),
          el("th", {}, ml ? "mean σ(predicted instead)" : a.labelled ? "mean p(predicted)" : "mean p(top-1)"),
          el("th", {}, a.labelled ? "mistakes / correct shown" : "shown: top-1 / top-2 images"), el("th", {}, "")),
        rows);
      body.append(el("div", {class: "cc-cols"},
        el("div", {}, el("h2", {}, ml ? "Labels missed, and what was predicted instead" : a.labelled ?
          "Most confused pairs" : "Most ambiguous pairs (top-1 vs top-2)"), table, perLabel),
        el("div", {}, el("h2", {}, ml ? "Missed × predicted instead" : "Confusion overview"), this.matrix())));
      return null;
    }

    matrix() {
      const a = this.data.audit;
      const m = a.confusion;
      const max = Math.max(1, ...m.counts.flat());
      const hit = new Map(a.pairs.map((p, i) => [p.true_index + "," + p.predicted_index, i]));
      const head = el("tr", {}, el("th", {}, a.multilabel ? "missed \\ predicted instead" : a.labelled ?
        "true \\ predicted" : "top-2 \\ top-1"),
        m.classes.map((c) => el("th", {class: "cc-col", title: this.name(c)}, this.name(c))));
      const rows = m.classes.map((r, i) => el("tr", {}, el("th", {title: this.name(r)}, this.name(r)),
        m.classes.map((c, j) => {
          const v = m.counts[i][j];
          const pair = hit.get(r + "," + c);
          const shade = v ? 0.15 + 0.85 * v / max : 0;
          const bg = i === j ? "rgba(22,163,74," + shade + ")" : "rgba(220,38,38," + shade + ")";
          return el("td", {class: pair !== undefined ? "cc-hit" : null, style: "background:" + bg,
            title: this.name(r) + " → " + this.name(c) + ": " + v,
            onclick: pair !== undefined ? () => this.openPair(pair) : null}, v ? String(v) : "");
        })));
      return el("table", {class: "cc-matrix"}, head, rows);
    }

    async pair(body) {
      const a = this.data.audit;
      const p = a.pairs[this.state.pair];
      const A = this.name(p.predicted_index), B = this.name(p.true_index);
      body.append(el("div", {class: "cc-nav"},
        el("button", {onclick: () => this.set({view: "overview"})}, "← all pairs"),
        el("button", {onclick: () => this.step("entry", -1)}, "‹ previous pair"),
        el("button", {onclick: () => this.step("entry", 1)}, "next pair ›"),
        this.scaleButtons()));
      const ml = !!a.multilabel, pn = ml ? "σ(" : "p(";
      body.append(el("h2", {}, (ml ? B + " present but missed, " + A + " predicted instead" : a.labelled ?
        B + " taken for " + A : A + " vs " + B + " (top-1 vs top-2)") + ": " +
        p.count + (a.labelled && !ml ? " mistakes" : " images")));
      const list = [...p.mistakes, ...p.correct];
      const cards = [];
      const gallery = (ids, title, target, foil) => el("div", {},
        el("h2", {}, title),
        el("div", {class: "cc-gallery"}, ids.length ? ids.map((id) => {
          const e = this.entries.get(id);
          const canvas = el("canvas", {width: 168, height: 168});
          cards.push([canvas, e, target, "foil:" + foil]);
          const pt = e.p[e.targets.indexOf(target)], pf = e.p[e.targets.indexOf(foil)];
          return el("div", {class: "cc-card", "data-entry": id, onclick: () => this.openEntry(list, list.indexOf(id))},
            canvas, el("div", {}, e.title),
            el("div", {}, pn + this.name(target) + ") = " + pt.toFixed(3) + ", " + pn + this.name(foil) + ") = " + pf.toFixed(3)));
        }) : el("p", {}, "none")));
      body.append(el("div", {class: "cc-cols"},
        gallery(p.mistakes, ml ? B + " present, " + A + " predicted instead: why " + A + " rather than " + B + "?" :
          a.labelled ? "Mistakes: why " + A + " rather than " + B + "?" :
          "Top-1 " + A + ", top-2 " + B + ": why " + A + " rather than " + B + "?", p.predicted_index, p.true_index),
        gallery(p.correct, ml ? B + " found, " + A + " rightly absent: why " + B + " rather than " + A + "?" :
          a.labelled ? "Correct " + B + ": why " + B + " rather than " + A + "?" :
          "Top-1 " + B + ": why " + B + " rather than " + A + "?", p.true_index, p.predicted_index)));
      body.append(this.colourBar(null, "the shown class"));
      const method = this.state.method;
      let shared;
      if (this.state.shared) {
        const tiles = await Promise.all(cards.map(([, e, t, k]) => this.tile(e, e.methods[method] ? method : Object.keys(e.methods)[0], t, k)));
        shared = Math.max(0, ...tiles.map((t) => (t ? t.scale : 0)));
      }
      await Promise.all(cards.map(([c, e, t, k]) => this.paint(c, e, e.methods[method] ? method : Object.keys(e.methods)[0], t, k, shared)));
    }

    scaleButtons() {
      return el("span", {class: "cc-buttons"},
        el("button", {"aria-pressed": String(!this.state.shared), "data-control": "scale-map",
          onclick: () => this.set({shared: false})}, "scale per map"),
        el("button", {"aria-pressed": String(this.state.shared), "data-control": "scale-shared",
          onclick: () => this.set({shared: true})}, "shared scale"));
    }

    colourBar(scale, target) {
      const bar = el("canvas", {class: "cc-bar", width: 256, height: 1});
      const ctx = bar.getContext("2d");
      const px = ctx.createImageData(256, 1);
      for (let i = 0; i < 256; i++) {
        const [r, g, b] = colour(i / 127.5 - 1);
        // the bar shows the colours as drawn over white at the current opacity
        const o = this.state.opacity;
        px.data[4 * i] = 255 * (1 - o) + r * o; px.data[4 * i + 1] = 255 * (1 - o) + g * o;
        px.data[4 * i + 2] = 255 * (1 - o) + b * o; px.data[4 * i + 3] = 255;
      }
      ctx.putImageData(px, 0, 0);
      const s = scale === null ? null : scale;
      return el("div", {class: "cc-colourbar"}, bar,
        el("div", {class: "cc-barlabels"},
          el("span", {}, "against t" + (s === null ? "" : " (" + fmt(-s) + ")")),
          el("span", {}, "0"),
          el("span", {}, "for t" + (s === null ? "" : " (" + fmt(s) + ")"))),
        el("div", {class: "cc-barlabels"}, el("span", {}, "t = " + target)));
    }

    async explorer(body) {
      const s = this.state;
      const e = this.entry();
      if (!e) { body.append(el("p", {}, "Nothing to show.")); return; }
      const main = el("canvas", {class: "cc-main", width: 336, height: 336});
      const m = e.methods[s.method];
      const j = e.targets.indexOf(s.target);
      const c = m.contrasts.indexOf(s.contrast);
      const scale = s.shared ? this.sharedScale(e, s.method) : m.scales[j][c];
      const nav = el("div", {class: "cc-nav"},
        this.data.audit ? el("button", {onclick: () => this.back()}, "← pair") : null,
        el("button", {onclick: () => this.step("entry", -1), "data-control": "prev"}, "‹ previous"),
        el("span", {}, (s.index + 1) + " / " + s.list.length),
        el("button", {onclick: () => this.step("entry", 1), "data-control": "next"}, "next ›"));
      const group = (title, ...content) => el("div", {class: "cc-group"}, el("div", {class: "cc-label"}, title), ...content);
      const targets = el("div", {class: "cc-buttons"}, e.targets.map((t, i) => el("button", {
        "aria-pressed": String(t === s.target), "data-control": "target", "data-value": t,
        onclick: () => { s.target = t; this.settle(); this.render(); },
      }, this.name(t) + " (" + e.p[i].toFixed(3) + ")")));
      const contrasts = el("div", {class: "cc-buttons"}, this.contrastsFor(e, s.method, s.target).map((k) => el("button", {
        "aria-pressed": String(k === s.contrast), "data-control": "contrast", "data-value": k,
        onclick: () => this.set({contrast: k}),
      }, this.label(k, s.target))));
      const methods = Object.keys(e.methods);
      const opacity = el("input", {type: "range", min: 0, max: 1, step: 0.05, value: s.opacity, "data-control": "opacity"});
      opacity.addEventListener("input", () => this.set({opacity: Number(opacity.value)}));
      const top = e.top.length ? group(e.unit ? "Its top classes" : "Top classes", el("table", {}, e.top.map(([cl, p]) =>
        el("tr", {}, el("td", {}, this.name(cl)), el("td", {}, p.toFixed(3)))))) : null;
      const siblings = e.unit ? this.siblings(e) : [];
      // a clip's frames or a volume's slices: a slider between the entries of one input (target and contrast kept)
      let views = null;
      if (e.view) {
        const group = s.list.map((id) => this.entries.get(id)).filter((o) => o.view && o.view.group === e.view.group)
          .sort((a, b) => a.view.index - b.view.index);
        const slider = el("input", {type: "range", min: 0, max: group.length - 1, step: 1, value: e.view.index,
          "data-control": "view", "aria-label": "frame or slice"});
        slider.addEventListener("input", () => {
          const o = group[Number(slider.value)];
          if (o) { s.index = s.list.indexOf(o.id); this.focusView = true; this.settle(); this.render(); }
        });
        views = el("div", {class: "cc-group"}, el("div", {class: "cc-label"}, e.view.label), slider);
        if (this.focusView) { this.focusView = false; setTimeout(() => slider.focus(), 0); }  // keys keep moving it
      }
      const pick = (o) => { s.index = s.list.indexOf(o.id); this.settle(); this.render(); };
      const units = siblings.length ? group(e.unit.kind === "object" ? "Object (or click its box)" : "Region",
        el("div", {class: "cc-buttons"}, siblings.map((o) => el("button", {
          "aria-pressed": String(o.id === e.id), "data-control": "unit", "data-value": o.id, onclick: () => pick(o),
        }, this.name(o.default.target) + (o.unit.kind === "object" ? " (" + o.unit.score.toFixed(2) + ")" : ""))))) : null;
      if (e.unit && e.unit.kind === "object") {
        main.addEventListener("click", (ev) => {
          const r = main.getBoundingClientRect();
          const fx = (ev.clientX - r.left) / r.width, fy = (ev.clientY - r.top) / r.height;
          const hit = siblings.filter((o) => fx >= o.unit.box[0] && fx <= o.unit.box[2] && fy >= o.unit.box[1] && fy <= o.unit.box[3])
            .sort((a, b) => area(a.unit.box) - area(b.unit.box));
          if (hit.length) pick(hit[0]);
        });
      }
      body.append(nav, el("div", {class: "cc-explorer"},
        el("div", {class: "cc-stage"}, main, this.colourBar(scale, this.name(s.target)),
          el("p", {class: "cc-question"}, this.question(s.contrast, s.target)),
          this.words(e, s.method, j, c),
          m.disagree && m.disagree[j] && m.disagree[j][c] ? el("p", {class: "cc-note"}, "Note: " + this.data.sign_note) : null),
        el("div", {class: "cc-panel"},
          el("div", {class: "cc-group"}, el("b", {}, e.title),
            e.label !== null && e.label !== undefined ? el("div", {}, "true class: " + this.name(e.label)) : null,
            e.labels ? el("div", {}, "labels present: " + (e.labels.length ? e.labels.map((c) => this.name(c)).join(", ") :
              "none")) : null),
          units,
          views,
          group("Target t", targets),
          group("Contrast", contrasts),
          methods.length > 1 ? group("Method", el("div", {class: "cc-buttons"}, methods.map((mm) => el("button", {
            "aria-pressed": String(mm === s.method), "data-control": "method", "data-value": mm,
            onclick: () => { s.method = mm; this.settle(); this.render(); },
          }, mm)))) : group("Method", el("span", {}, s.method)),
          group("Opacity", opacity, el("span", {}, " " + s.opacity.toFixed(2))),
          group("Colour scale", this.scaleButtons()),
          top,
          el("div", {class: "cc-keys"}, "Keys: ←/→ image, ↑/↓ target, c/C contrast, m method, s scale, +/− opacity" +
            (this.data.audit ? ", Esc back" : "")))));
      if (!this.data.audit && s.list.length > 1) {
        body.append(el("div", {class: "cc-thumbs"}, s.list.map((id, i) => {
          const img = el("img", {src: this.data.images[this.entries.get(id).image].src, alt: this.entries.get(id).title,
            class: i === s.index ? "cc-current" : null, title: this.entries.get(id).title});
          img.addEventListener("click", () => { s.index = i; this.settle(); this.render(); });
          return img;
        })));
      }
      await this.paint(main, e, s.method, s.target, s.contrast, scale);
      if (e.unit) this.drawUnits(main, e, siblings);
    }

    // a vision-language model's prompt: its words coloured by their attribution under the shown target and contrast
    words(e, method, j, c) {
      const row = e.words && e.words.values[method] && e.words.values[method][j] && e.words.values[method][j][c];
      if (!row) return null;
      const half = Math.max(...row.map(Math.abs)) || 1;
      return el("p", {class: "cc-words", "data-control": "words"}, el("span", {class: "cc-label"}, "The prompt's words: "),
        e.words.tokens.map((t, i) => {
          const [r, g, b] = colour(row[i] / half);
          return el("span", {class: "cc-word", title: fmt(row[i]), "data-value": row[i],
            style: "background: rgb(" + [r, g, b].map(Math.round).join(",") + ")" +
              (Math.abs(row[i] / half) > 0.6 ? "; color: white" : "")}, t);
        }));
    }

    // the other regions / objects of the same image, in page order (this one included)
    siblings(e) {
      return this.state.list.map((id) => this.entries.get(id)).filter((o) => o.unit && o.image === e.image);
    }

    // an object's box (all boxes of the image, this one bold; an instance's mask outlined) or a region's
    // outline, over the map
    drawUnits(canvas, e, siblings) {
      const ctx = canvas.getContext("2d");
      const W = canvas.width, H = canvas.height;
      const outline = (m) => {
        const at = (x, y) => x >= 0 && y >= 0 && x < m.w && y < m.h && m.rows[y][x] === "1";
        ctx.fillStyle = "#111";
        const sx = W / m.w, sy = H / m.h;
        for (let y = 0; y < m.h; y++) {
          for (let x = 0; x < m.w; x++) {
            if (at(x, y) && !(at(x - 1, y) && at(x + 1, y) && at(x, y - 1) && at(x, y + 1))) {
              ctx.fillRect(x * sx, y * sy, Math.max(1, sx), Math.max(1, sy));
            }
          }
        }
      };
      ctx.save();
      if (e.unit.kind === "object") {
        if (e.unit.mask) outline(e.unit.mask);
        for (const o of siblings) {
          const [x0, y0, x1, y1] = o.unit.box;
          const current = o.id === e.id;
          ctx.lineWidth = current ? 3 : 1;
          ctx.setLineDash(current ? [] : [4, 3]);
          ctx.strokeStyle = current ? "#111" : "rgba(17,17,17,0.7)";
          ctx.strokeRect(x0 * W, y0 * H, (x1 - x0) * W, (y1 - y0) * H);
          if (current) {
            const text = this.name(o.default.target);
            ctx.font = "12px sans-serif";
            ctx.fillStyle = "#111";
            ctx.fillRect(x0 * W, Math.max(0, y0 * H - 16), ctx.measureText(text).width + 8, 16);
            ctx.fillStyle = "#fff";
            ctx.fillText(text, x0 * W + 4, Math.max(12, y0 * H - 4));
          }
        }
      } else {
        outline(e.unit.mask);
      }
      ctx.restore();
    }
  }

  window.ClassContrastViewer = {
    instances: [],
    mount(id) {
      const root = document.getElementById(id);
      const data = JSON.parse(document.getElementById(id + "-data").textContent);
      const viewer = new Viewer(root, data);
      this.instances.push(viewer);
      if (document.body && document.body.dataset.ccPage === "1") root.focus();  // a page of its own
      return viewer;
    },
  };
})();
