/* classcontrast serve's live explorer: pick or drop an image, see the model's top classes, then click a target, a
 * foil, a contrast and a method; each map is computed on demand by the server's :explain and drawn as the static
 * page draws them (the photo as a light grey backdrop, blue = against the target, white = 0, red = for it, one
 * symmetric scale). Everything comes from this server; the last map's values stay in window.ccLive.map. */
(function () {
  "use strict";
  const $ = (s) => document.querySelector(s);
  const state = {model: null, image: null, classes: [], target: null, foil: null, contrast: "weighted",
                 method: "gradcam", map: null, score: null, busy: 0, shown: 0};
  window.ccLive = state;

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k.startsWith("data-")) e.setAttribute(k, v); else e[k] = v;
    }
    for (const c of children) e.append(c);
    return e;
  }

  async function call(path, body) {
    const r = await fetch(path, body === undefined ? {} : {method: "POST", body: JSON.stringify(body),
                                                          headers: {"content-type": "application/json"}});
    const j = await r.json();
    if (!r.ok) throw new Error(j.error || r.statusText);
    return j;
  }

  function decode(m) {
    const bin = atob(m.b64);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return {shape: m.shape, values: new Float32Array(bytes.buffer)};
  }

  // bwr: blue (-1) -> white (0) -> red (+1), as the static page and matplotlib's "bwr"
  function colour(t) {
    t = t < -1 ? -1 : t > 1 ? 1 : t;
    return t < 0 ? [255 * (1 + t), 255 * (1 + t), 255] : [255, 255 * (1 - t), 255 * (1 - t)];
  }

  function say(text, error) {
    const s = $("#cc-status");
    s.textContent = text;
    s.dataset.error = error ? "1" : "0";
  }

  function loadImage(src) {
    return new Promise((ok, fail) => { const i = new Image(); i.onload = () => ok(i); i.onerror = fail; i.src = src; });
  }

  async function paint() {
    const canvas = $("#cc-canvas");
    const ctx = canvas.getContext("2d", {willReadFrequently: true});
    const photo = await loadImage("data:image/png;base64," + state.view);
    canvas.width = photo.width; canvas.height = photo.height;
    ctx.drawImage(photo, 0, 0);
    const img = ctx.getImageData(0, 0, canvas.width, canvas.height);
    const d = img.data;
    for (let i = 0; i < d.length; i += 4) {  // 0.25 + 0.6 x luminance: red and blue never blend into the photo
      const grey = 63.75 + 0.6 * (0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2]);
      d[i] = grey; d[i + 1] = grey; d[i + 2] = grey;
    }
    ctx.putImageData(img, 0, 0);
    if (!state.map) return;
    const [h, w] = state.map.shape.slice(-2);
    let s = 0;
    for (const v of state.map.values) s = Math.max(s, Math.abs(v));
    const off = el("canvas", {width: w, height: h});
    const px = off.getContext("2d").createImageData(w, h);
    state.map.values.forEach((v, i) => {
      const z = s > 0 ? v / s : 0;
      const [r, g, b] = colour(z);
      px.data[4 * i] = r; px.data[4 * i + 1] = g; px.data[4 * i + 2] = b;
      px.data[4 * i + 3] = Math.round(255 * Math.pow(Math.abs(z), 0.75));
    });
    off.getContext("2d").putImageData(px, 0, 0);
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(off, 0, 0, canvas.width, canvas.height);
    $("#cc-scale").textContent = `±${s.toPrecision(3)}`;
  }

  function buttons(where, control, items, pressed) {
    const box = $(where);
    box.replaceChildren(...items.map(([value, label]) => el("button", {
      type: "button", textContent: label, "data-control": control, "data-value": String(value),
      "aria-pressed": String(String(value) === String(pressed))})));
  }

  function controls() {
    const names = state.classes.map((c) => [c.index, `${c.name} ${(100 * c.p).toFixed(1)}%`]);
    buttons("#cc-targets", "target", names, state.target);
    buttons("#cc-foils", "foil", [["", "none"], ...names.filter(([i]) => i !== state.target)],
            state.foil === null ? "" : state.foil);
    buttons("#cc-contrasts", "contrast", state.contrasts.map((c) => [c, c]), state.contrast);
    buttons("#cc-methods", "method", state.methods.map((m) => [m, m]), state.method);
  }

  function question() {
    const name = (i) => state.classes.find((c) => c.index === i)?.name ?? String(i);
    if (state.foil !== null) return `Why ${name(state.target)} rather than ${name(state.foil)}?`;
    return `Why ${name(state.target)}? (${state.contrast})`;
  }

  async function explain() {
    const contrast = state.foil !== null ? `foil:${state.foil}` : state.contrast;
    state.busy++;
    say("explaining…");
    try {
      const j = await call(`/v1/models/${encodeURIComponent(state.model)}:explain`, {
        instances: [state.image],
        parameters: {method: state.method, contrasts: [contrast], targets: [state.target], maps: "input"}});
      const row = j.explanations[0][0];
      state.map = decode(row.map);
      state.score = row.score;
      $("#cc-question").textContent = question();
      await paint();
      state.shown++;
      say(`${state.method}, ${contrast}: score ${row.score.toPrecision(4)}`);
    } catch (e) {
      say(e.message, true);
    } finally {
      state.busy--;
      $(".cc-viewer").dataset.ready = state.busy ? "0" : "1";
    }
  }

  async function show(b64) {
    state.image = b64;
    state.map = null;
    $(".cc-viewer").dataset.ready = "0";
    try {
      const [p, v] = await Promise.all([
        call(`/v1/models/${encodeURIComponent(state.model)}:predict`, {instances: [b64], parameters: {top_k: 5}}),
        call(`/explorer/view/${encodeURIComponent(state.model)}`, {instances: [b64]})]);
      const top = p.predictions[0];
      state.classes = top.indices.map((index, i) => ({index, name: top.classes[i], p: top.probabilities[i]}));
      state.view = v.image;
      state.target = state.classes[0].index;
      state.foil = null;
      controls();
      await explain();
    } catch (e) {
      say(e.message, true);
      $(".cc-viewer").dataset.ready = "1";
    }
  }

  function read(file) {
    const reader = new FileReader();
    reader.onload = () => show(String(reader.result).split(",")[1]);
    reader.readAsDataURL(file);
  }

  document.addEventListener("click", (ev) => {
    const b = ev.target.closest("button[data-control]");
    if (!b || !state.image) {
      const sample = ev.target.closest("button[data-sample]");
      if (sample) fetch(`/explorer/samples/${sample.dataset.sample}.png`).then((r) => r.blob()).then(read);
      return;
    }
    const v = b.dataset.value;
    if (b.dataset.control === "target") { state.target = Number(v); if (state.foil === state.target) state.foil = null; }
    if (b.dataset.control === "foil") state.foil = v === "" ? null : Number(v);
    if (b.dataset.control === "contrast") { state.contrast = v; state.foil = null; }
    if (b.dataset.control === "method") state.method = v;
    controls();
    explain();
  });

  async function start() {
    const config = await call("/explorer/config");
    Object.assign(state, {model: config.models[0], methods: config.methods, contrasts: config.contrasts});
    const models = $("#cc-model");
    models.replaceChildren(...config.models.map((m) => el("option", {value: m, textContent: m})));
    models.addEventListener("change", () => { state.model = models.value; if (state.image) show(state.image); });
    $("#cc-samples").replaceChildren(...config.samples.map((s) => el("button", {
      type: "button", textContent: s, "data-sample": s})));
    $("#cc-file").addEventListener("change", (ev) => ev.target.files[0] && read(ev.target.files[0]));
    const drop = $("#cc-drop");
    drop.addEventListener("dragover", (ev) => ev.preventDefault());
    drop.addEventListener("drop", (ev) => { ev.preventDefault(); if (ev.dataTransfer.files[0]) read(ev.dataTransfer.files[0]); });
    $(".cc-viewer").dataset.ready = "1";
  }

  start().catch((e) => say(e.message, true));
})();
