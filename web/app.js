// The demo page: drives cuttle's wasm Engine (src/web.rs) one epoch at a time and draws
// what it reports. Plain JavaScript, no dependencies. `window.cuttle` holds the page's
// state and an event log; the headless test (web/test/browser.mjs) reads it.
// Image runs (CNNs, ViT) chart test accuracy and end with a grid of predictions; text runs
// (the character GPT) chart the validation loss in nats per character and append a sample
// of generated text every SAMPLE_EVERY evaluations and at the end.

import init, { Engine } from './pkg/cuttle.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

// Presets sized for a browser: partial run options, whose missing keys and defaults come
// from the engine (src/train/presets.json and RunConfig in src/train/config.rs). Loaded
// in main().
let PRESETS = null;

const app = (window.cuttle = { events: [], ready: false, running: false, done: false, error: null, memory: [] });
const emit = (kind, data = {}) => app.events.push({ kind, t: performance.now(), ...data });

let engine = null;
let wasm = null;
let paused = false;
let run = null; // the current run's figures for the charts and report

// Samples of a text run: this many characters at this temperature, the same seed each
// time (so the texts differ only by what the model learnt), every this many evaluations.
const SAMPLE = { tokens: 200, temperature: 0.8, seed: 1234 };
const SAMPLE_EVERY = 2;

// Whether a resolved run configuration is a language model's (they alone have a context).
const isText = (options) => options.context != null;

// ---- charts: a line chart on a canvas, small on purpose ----------------------------
const COLORS = ['#d62728', '#1f77b4', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf'];

function drawChart(canvas, series, { mark = null, xLabel = 'epoch', yFormat = (v) => v.toFixed(2) } = {}) {
  const ctx = canvas.getContext('2d');
  const W = canvas.width, H = canvas.height, L = 52, R = 10, T = 10, B = 30;
  ctx.clearRect(0, 0, W, H);
  const pts = series.flatMap((s) => s.points);
  if (pts.length === 0) return;
  let [x0, x1] = [Math.min(...pts.map((p) => p[0]), 0), Math.max(...pts.map((p) => p[0]), 1)];
  let [y0, y1] = [Math.min(...pts.map((p) => p[1])), Math.max(...pts.map((p) => p[1]))];
  const pad = Math.max((y1 - y0) * 0.08, Math.abs(y1) * 0.05, 1e-3);
  [y0, y1] = [y0 - pad, y1 + pad];
  const X = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const Y = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  ctx.font = '11px sans-serif';
  ctx.strokeStyle = '#ddd';
  ctx.fillStyle = '#555';
  for (let i = 0; i <= 4; i++) {
    const y = y0 + ((y1 - y0) * i) / 4;
    ctx.beginPath(); ctx.moveTo(L, Y(y)); ctx.lineTo(W - R, Y(y)); ctx.stroke();
    ctx.fillText(yFormat(y), 4, Y(y) + 4);
  }
  const step = Math.max(1, Math.ceil((x1 - x0) / 10));
  for (let x = Math.ceil(x0); x <= x1; x += step) ctx.fillText(String(x), X(x) - 3, H - B + 14);
  ctx.fillText(xLabel, W / 2 - 14, H - 4);
  if (mark !== null) {
    ctx.setLineDash([4, 4]); ctx.strokeStyle = '#000';
    ctx.beginPath(); ctx.moveTo(X(mark), T); ctx.lineTo(X(mark), H - B); ctx.stroke();
    ctx.setLineDash([]);
  }
  series.forEach((s, i) => {
    ctx.strokeStyle = COLORS[i % COLORS.length];
    ctx.lineWidth = 2;
    ctx.beginPath();
    s.points.forEach(([x, y], j) => (j ? ctx.lineTo(X(x), Y(y)) : ctx.moveTo(X(x), Y(y))));
    ctx.stroke();
    ctx.lineWidth = 1;
    ctx.fillStyle = COLORS[i % COLORS.length];
    ctx.fillText(s.name, W - R - 110, T + 12 + 13 * i);
  });
}

function redraw() {
  if (!run) return;
  const mark = run.switchEpoch;
  // A text run's "epoch" is one evaluation interval.
  const xLabel = run.text ? 'evaluation' : 'epoch';
  if (run.text) {
    drawChart($('loss-chart'), [{ name: 'train loss', points: run.loss }, { name: 'val loss', points: run.val }], { mark, xLabel });
    drawChart($('acc-chart'), [{ name: 'val loss', points: run.val }], { mark, xLabel, yFormat: (v) => v.toFixed(3) });
  } else {
    drawChart($('loss-chart'), [{ name: 'train loss', points: run.loss }], { mark });
    drawChart($('acc-chart'), [{ name: 'test accuracy %', points: run.acc }], { mark, yFormat: (v) => v.toFixed(1) });
  }
  const ranks = (run.tracked || []).map((name, i) => ({ name, points: run.ranks.map((r) => [r[0], r[1][i]]) }));
  drawChart($('rank-chart'), ranks, { mark, xLabel, yFormat: (v) => v.toFixed(1) });
}

function captions(text) {
  $('loss-caption').textContent = text ? 'Training loss (per readback) and validation loss (per evaluation), nats/char' : 'Training loss (per readback)';
  $('acc-caption').textContent = text ? 'Validation loss per evaluation (nats per character)' : 'Test accuracy per epoch';
}

// ---- UI helpers --------------------------------------------------------------------
const status = (text) => ($('status').textContent = text);
function buttons({ start, pause, reset, download }) {
  $('start').disabled = !start;
  $('pause').disabled = !pause;
  $('reset').disabled = !reset;
  $('download').disabled = !download;
}

async function fail(where, e) {
  // A lost device also fails the readback in flight, often before the lost callback
  // runs: give it a moment so the page can say what really happened.
  await new Promise((r) => setTimeout(r, 250));
  const lost = engine && engine.lost();
  const text = lost ? `The GPU device was lost (${lost}). Reload the page to start again.` : `${where}: ${e.message || e}`;
  app.error = text;
  emit('error', { text });
  status(text);
  $('status').className = 'error';
  app.running = false;
  buttons({ start: !lost, pause: false, reset: !lost, download: false });
}

// ---- the run -----------------------------------------------------------------------
async function loadData(options) {
  const choice = document.querySelector('input[name=data]:checked').value;
  let desc;
  if (isText(options)) {
    // A language model trains on the text file when one is chosen, else the built-in text.
    const file = $('text-file').files[0];
    if (choice === 'text' && !file) throw new Error('choose a text file first (UTF-8, e.g. a .txt)');
    if (choice === 'text') desc = JSON.parse(engine.use_text(file.name, new Uint8Array(await file.arrayBuffer())));
    else desc = JSON.parse(engine.use_builtin_text());
    $('data-status').textContent = `${desc.name}: ${desc.train.toLocaleString()} training / ${desc.val.toLocaleString()} validation characters, ${desc.vocab} distinct`;
    return desc;
  }
  if (choice === 'builtin-text' || choice === 'text') throw new Error(`${options.model} trains on images: choose an image data set, or the GPT preset for text`);
  if (choice === 'cifar10') {
    const files = [...$('cifar-files').files];
    if (files.length === 0) throw new Error('choose the CIFAR-10 .bin files first (data_batch_1.bin … test_batch.bin)');
    const bytes = await Promise.all(files.map(async (f) => new Uint8Array(await f.arrayBuffer())));
    desc = JSON.parse(engine.use_cifar10(files.map((f) => f.name), bytes));
  } else if (choice === 'folder') {
    const files = [...$('folder-files').files].filter((f) => /\.(png|jpe?g)$/i.test(f.name));
    if (files.length === 0) throw new Error('choose a folder holding train/<class>/ and test/<class>/ images first');
    const bytes = await Promise.all(files.map(async (f) => new Uint8Array(await f.arrayBuffer())));
    desc = JSON.parse(engine.use_folder(files.map((f) => f.webkitRelativePath || f.name), bytes));
  } else {
    desc = JSON.parse(engine.use_builtin(options.train_subset ?? 0, options.test_subset ?? 0));
  }
  $('data-status').textContent = `${desc.name}: ${desc.train} training / ${desc.test} test images, ${desc.channels}x${desc.height}x${desc.width}, classes ${desc.classes.join(', ')}`;
  return desc;
}

async function start() {
  const name = params.get('preset') || $('preset').value;
  const preset = PRESETS[name] || PRESETS.quick;
  buttons({});
  app.done = false;
  app.error = null;
  $('status').className = 'muted';
  $('report-panel').hidden = true;
  $('grid-panel').hidden = true;
  $('samples-panel').hidden = true;
  $('samples').innerHTML = '';
  try {
    // URL overrides (e.g. ?preset=test&model=resnet6&factorize=auto) for trying variants.
    const overrides = Object.fromEntries(['model', 'factorize'].filter((k) => params.has(k)).map((k) => [k, params.get(k)]));
    // The whole run configuration, every key the engine knows at its value or default.
    const options = JSON.parse(Engine.options(JSON.stringify({ ...preset, ...overrides, cuttlefish: $('cuttlefish').checked })));
    const data = await loadData(options);
    emit('data', { data });
    status('Planning the model and measuring the initial stable ranks…');
    const info = JSON.parse(await engine.start(JSON.stringify(options)));
    const text = isText(options);
    captions(text);
    run = { options, data, info, text, loss: [], acc: [], val: [], ranks: [], tracked: info.tracked, switchEpoch: null, epochs: [], switch: null, samples: [], started: performance.now() };
    if (info.initial_ranks) run.ranks.push([0, info.initial_ranks]);
    emit('start', { options, info });
    redraw();
    paused = false;
    await loop();
  } catch (e) {
    fail('start', e);
  }
}

async function loop() {
  app.running = true;
  buttons({ pause: true });
  $('pause').textContent = 'Pause';
  const { options, info } = run;
  while (true) {
    const epoch = run.epochs.length;
    const onProgress = (line) => {
      const p = JSON.parse(line);
      if (!run.firstStep) {
        run.firstStep = performance.now();
        emit('first-step', { since_load_s: run.firstStep / 1000, steps: p.step });
      }
      run.loss.push([epoch + p.step / p.steps, p.loss]);
      emit('progress', { epoch: epoch + 1, ...p });
      $('progress').style.width = `${(100 * (epoch + p.step / p.steps)) / options.epochs}%`;
      if (run.text) {
        const last = run.epochs.at(-1);
        const tps = last ? `, ${last.tokens_per_s.toFixed(0)} tokens/s` : '';
        status(`Step ${epoch * p.steps + p.step}/${options.steps} (evaluation ${epoch + 1}/${options.epochs}): loss ${p.loss.toFixed(4)} nats/char${tps}`);
      } else {
        status(`Epoch ${epoch + 1}/${options.epochs}, step ${p.step}/${p.steps}: loss ${p.loss.toFixed(4)}, accuracy ${(100 * p.acc).toFixed(1)}%`);
      }
      redraw();
    };
    let out = null;
    try {
      // A pause asked for between epochs (while a sample was written) stops here.
      if (!paused) out = await engine.run_epoch(onProgress);
    } catch (e) {
      return fail(`epoch ${epoch + 1}`, e);
    }
    if (out === null) {
      app.running = false;
      emit('paused');
      status(`Paused in epoch ${epoch + 1}.`);
      $('pause').textContent = 'Resume';
      buttons({ pause: true, reset: true, download: true });
      return;
    }
    const o = JSON.parse(out);
    if (o.switch) {
      run.switch = o.switch;
      run.switchEpoch = o.switch.epoch;
      emit('switch', { report: o.switch });
    }
    run.epochs.push(o.report);
    run.acc.push([o.report.epoch, 100 * o.report.test_acc]);
    if (run.text) run.val.push([o.report.epoch, o.report.test_loss]);
    if (o.stable_ranks) run.ranks.push([o.report.epoch, o.stable_ranks]);
    emit('epoch', { report: o.report, stable_ranks: o.stable_ranks, steps_per_s: o.report.images_per_s / options.batch });
    redraw();
    if (run.text && (o.done || run.epochs.length % SAMPLE_EVERY === 0)) {
      try {
        await showSample(run.epochs.length * info.steps_per_epoch);
      } catch (e) {
        return fail(`sampling after evaluation ${run.epochs.length}`, e);
      }
    }
    if (o.done) break;
  }
  await finish(info);
}

// Generates a sample from the model as it is after `step` steps and appends it.
async function showSample(step) {
  status(`Step ${step}: writing a sample…`);
  const text = await engine.sample(SAMPLE.tokens, SAMPLE.temperature, SAMPLE.seed);
  run.samples.push({ step, text });
  const div = document.createElement('div');
  div.className = 'sample';
  const head = document.createElement('b');
  const val = run.val.at(-1);
  head.textContent = `after step ${step}${val ? ` (validation loss ${val[1].toFixed(3)} nats/char)` : ''}`;
  const pre = document.createElement('pre');
  pre.textContent = text;
  div.append(head, pre);
  $('samples').append(div);
  $('samples-panel').hidden = false;
  emit('sample', { step, text });
}

async function finish() {
  const report = JSON.parse(engine.report());
  showReport(report);
  if (run.text) {
    status(`Done: validation loss ${report.val_loss.toFixed(3)} nats/char, character accuracy ${(100 * report.test_acc).toFixed(1)}%.`);
  } else {
    await showPredictions();
    status(`Done: test accuracy ${(100 * report.test_acc).toFixed(2)}%.`);
  }
  buttons({ start: true, reset: true, download: true });
  $('pause').textContent = 'Pause';
  app.running = false;
  app.memory.push(wasm.memory.buffer.byteLength);
  emit('report', { report, wasm_memory: wasm.memory.buffer.byteLength });
  app.done = true;
}

function showReport(r) {
  const epochs = run.epochs;
  const rate = (low, key = 'images_per_s') => {
    const es = epochs.filter((e) => (run.switchEpoch !== null && e.epoch > run.switchEpoch) === low);
    return es.length ? (es.reduce((a, e) => a + e[key], 0) / es.length).toFixed(0) : '–';
  };
  const rows = [
    ...(run.text
      ? [['Validation loss', `${r.val_loss.toFixed(3)} nats/char (${(r.val_loss / Math.LN2).toFixed(3)} bits), character accuracy ${(100 * r.test_acc).toFixed(1)}%`]]
      : [['Test accuracy', `${(100 * r.test_acc).toFixed(2)}%`]]),
    ['Parameters', `${r.params_full.toLocaleString()} → ${r.params_final.toLocaleString()} (${(r.params_full / r.params_final).toFixed(2)}x smaller)`],
    ['Switch to low rank', r.switch_epoch ? `before epoch ${r.switch_epoch}` : (r.converged === false ? 'ranks did not settle: stayed full-rank' : 'Cuttlefish off')],
    ['Chosen ranks', Object.keys(r.ranks).length ? Object.entries(r.ranks).map(([k, v]) => `${k}: ${v}`).join(', ') : '–'],
    run.text
      ? ['Tokens/s full-rank / low-rank', `${rate(false, 'tokens_per_s')} / ${rate(true, 'tokens_per_s')}`]
      : ['Images/s full-rank / low-rank', `${rate(false)} / ${rate(true)}`],
    ['Time full-rank / low-rank', `${r.seconds_full_rank.toFixed(1)} s / ${r.seconds_low_rank.toFixed(1)} s`],
  ];
  if (run.switch) {
    for (const d of run.switch.decisions) {
      const t = d.full_ms != null ? `, median of ${d.samples}: full ${d.full_ms.toFixed(2)} ms vs factorized ${d.factorized_ms.toFixed(2)} ms` : '';
      const why = d.reason ? `: ${d.reason}` : '';
      rows.push([`  ${d.layer}`, `rank ${d.rank}/${d.full_rank}, ${d.factorized ? 'factorized' : 'kept full-rank'}${why}${t}`]);
    }
  }
  $('report').innerHTML = '';
  for (const [k, v] of rows) {
    const tr = $('report').insertRow();
    tr.insertCell().textContent = k;
    tr.insertCell().textContent = v;
  }
  $('report-panel').hidden = false;
}

async function showPredictions() {
  const count = 24;
  const { labels, predictions } = JSON.parse(await engine.predictions(count));
  const bytes = engine.test_images(labels.length);
  const { channels: c, height: h, width: w, classes } = run.data;
  const grid = $('grid');
  grid.innerHTML = '';
  labels.forEach((label, i) => {
    const canvas = document.createElement('canvas');
    [canvas.width, canvas.height] = [w, h];
    const img = canvas.getContext('2d').createImageData(w, h);
    const base = i * c * h * w;
    for (let p = 0; p < h * w; p++) {
      for (let k = 0; k < 3; k++) img.data[4 * p + k] = bytes[base + (c === 3 ? k * h * w : 0) + p];
      img.data[4 * p + 3] = 255;
    }
    canvas.getContext('2d').putImageData(img, 0, 0);
    const cell = document.createElement('div');
    const ok = predictions[i] === label;
    cell.className = `cell ${ok ? 'right' : 'wrong'}`;
    cell.title = `true: ${classes[label]}`;
    const caption = document.createElement('span');
    caption.textContent = ok ? classes[predictions[i]] : `${classes[predictions[i]]} (is ${classes[label]})`;
    cell.append(canvas, caption);
    grid.append(cell);
  });
  $('grid-panel').hidden = false;
  emit('predictions', { right: predictions.filter((p, i) => p === labels[i]).length, shown: labels.length });
}

async function download() {
  const bytes = await engine.export_model();
  const url = URL.createObjectURL(new Blob([bytes], { type: 'application/octet-stream' }));
  const a = Object.assign(document.createElement('a'), { href: url, download: `cuttle-${run.options.model}.safetensors` });
  a.click();
  URL.revokeObjectURL(url);
  emit('download', { bytes: bytes.length });
}

function reset() {
  try {
    engine.reset();
  } catch (e) {
    return fail('reset', e);
  }
  run = null;
  app.done = false;
  for (const id of ['loss-chart', 'acc-chart', 'rank-chart']) $(id).getContext('2d').clearRect(0, 0, 1e4, 1e4);
  $('progress').style.width = '0';
  $('report-panel').hidden = true;
  $('grid-panel').hidden = true;
  $('samples-panel').hidden = true;
  $('samples').innerHTML = '';
  status('Ready.');
  buttons({ start: true });
}

// ---- the data choices follow the preset ------------------------------------------
// A GPT preset trains on text and the others on images: the radio buttons of the other
// kind are disabled, and a choice of the wrong kind moves to that kind's built-in data.
// Picking a text file chooses it (and the GPT preset, when an image preset was chosen).
function presetIsText(name) {
  return isText(JSON.parse(Engine.options(JSON.stringify(PRESETS[name] || PRESETS.quick))));
}

function syncDataChoices() {
  const kind = presetIsText(params.get('preset') || $('preset').value) ? 'text' : 'images';
  for (const r of document.querySelectorAll('input[name=data]')) r.disabled = r.dataset.kind !== kind;
  const checked = document.querySelector('input[name=data]:checked');
  if (!checked || checked.disabled) document.querySelector(`input[name=data][value=${kind === 'text' ? 'builtin-text' : 'builtin'}]`).checked = true;
}

$('preset').onchange = syncDataChoices;
$('text-file').onchange = () => {
  if (!$('text-file').files.length) return;
  if (!presetIsText($('preset').value) && !$('preset').disabled) $('preset').value = 'gpt';
  syncDataChoices();
  const r = document.querySelector('input[name=data][value=text]');
  if (!r.disabled) r.checked = true;
};

// ---- start-up ----------------------------------------------------------------------
async function main() {
  wasm = await init();
  PRESETS = JSON.parse(Engine.presets());
  syncDataChoices();
  if (!navigator.gpu) {
    $('adapter').innerHTML = 'This browser has no WebGPU. It works in Chrome and Edge 113 or later on Windows, macOS and ChromeOS (on Linux start Chrome with <code>--enable-unsafe-webgpu</code>), in Safari 26, and in Firefox where WebGPU is enabled (<code>dom.webgpu.enabled</code> in about:config).';
    $('adapter-panel').className = 'panel error';
    status('No WebGPU.');
    app.error = 'no WebGPU';
    return;
  }
  try {
    engine = await Engine.open();
  } catch (e) {
    $('adapter').textContent = `No usable WebGPU adapter: ${e.message || e}`;
    $('adapter-panel').className = 'panel error';
    app.error = String(e.message || e);
    return;
  }
  const a = JSON.parse(engine.adapter());
  const js = await navigator.gpu.requestAdapter({ powerPreference: 'high-performance' });
  const info = js && js.info ? [js.info.vendor, js.info.architecture, js.info.description].filter(Boolean).join(' ') : '';
  const fallback = js && (js.info?.isFallbackAdapter ?? js.isFallbackAdapter);
  $('adapter').innerHTML = '';
  const line = document.createElement('span');
  line.textContent = `${info || a.name || 'unnamed adapter'}${fallback ? ' — a software (fallback) adapter: expect it to be slow' : ''}. ` +
    `Storage binding ${(a.max_storage_binding / 2 ** 20).toFixed(0)} MiB, buffer ${(a.max_buffer / 2 ** 20).toFixed(0)} MiB, ` +
    `${a.max_workgroup_invocations} invocations and ${(a.max_workgroup_storage / 1024).toFixed(0)} KiB shared memory per workgroup` +
    `${a.subgroups ? ', subgroups' : ''}${a.timestamps ? ', timestamp queries' : ''}.`;
  $('adapter').append(line);
  emit('adapter', { adapter: a, info, fallback: !!fallback, ready_s: performance.now() / 1000 });
  app.ready = true;
  status('Ready.');
  buttons({ start: true });
  if (params.get('preset')) $('preset').disabled = true;
  if (params.has('autostart')) start();
}

$('start').onclick = start;
// `paused` also holds a pause asked for between two epochs, which `engine.pause()` alone
// would miss (the next `run_epoch` clears it).
const pauseRun = () => {
  paused = true;
  engine.pause();
};
const resumeRun = () => {
  paused = false;
  return loop();
};
$('pause').onclick = () => {
  if (app.running) {
    pauseRun();
    $('pause').disabled = true;
  } else {
    resumeRun();
  }
};
$('reset').onclick = reset;
$('download').onclick = () => download().catch((e) => fail('download', e));
window.cuttleApp = { start, reset, pause: pauseRun, resume: resumeRun, download,
  loseDevice: () => engine.destroy_device_for_test() };
main().catch((e) => fail('loading', e));
