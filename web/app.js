// The demo page: drives cuttle's wasm Engine (src/web.rs) one epoch at a time and draws
// what it reports. Plain JavaScript, no dependencies. `window.cuttle` holds the page's
// state and an event log; the headless test (web/test/browser.mjs) reads it.
// Image runs (CNNs, ViT) chart test accuracy and end with a grid of predictions; text runs
// (the character GPT) chart the validation loss in nats per character and append a sample
// of generated text every SAMPLE_EVERY evaluations and at the end.

import init, { Engine } from './pkg/cuttle.js';
import { drawChart } from './chart.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

// Presets sized for a browser: partial run options, whose missing keys and defaults come
// from the engine (src/train/presets.json and RunConfig in src/train/config.rs). Loaded
// in main(). The menu offers these; on a software adapter `quick` is replaced by
// `quick-software` (the same idea at a size that finishes in about a minute there).
let PRESETS = null;
const MENU = [
  ['quick', 'Quick: ResNet-6, 4 epochs, 3,000 images (seconds on a GPU)'],
  ['quick-software', 'Quick, sized for a software GPU: small CNN, 4 epochs, 600 images (about 2 minutes)'],
  ['full', 'ResNet-6, 6 epochs, every image'],
  ['cnn', 'Small CNN (no residuals), 4 epochs, 3,000 images'],
  ['vit', 'Vision transformer (ViT-mini, 139k parameters), 5 epochs, 3,000 images'],
  ['resnet8', 'ResNet-8, 6 epochs (CIFAR-sized; slow on software GPUs)'],
  ['gpt', 'Character GPT (gpt-mini, 2 layers), 100 steps on text'],
];

const app = (window.cuttle = { events: [], onEvent: null, ready: false, running: false, pausing: false, paused: false, done: false, error: null, memory: [], software: false });
// Every event goes to the log; `app.onEvent` (the browser test's hook) sees it at once.
const emit = (kind, data = {}) => {
  const e = { kind, t: performance.now(), ...data };
  app.events.push(e);
  if (app.onEvent) app.onEvent(e);
};

let engine = null;
let wasm = null;
let run = null; // the current run's figures for the charts and report
let previous = null; // the last finished run's curves, drawn faintly for comparison
let loaded = null; // { key, desc }: the data set the engine holds, and what chose it

// Samples of a text run: this many characters at this temperature, the same seed each
// time (so the texts differ only by what the model learnt), every this many evaluations.
// `?sample=N` in the address sets the length (the browser test's short runs use 40: on a
// software adapter each character costs a forward pass, and 200 took half a run).
const SAMPLE_MAX = 2000;
const SAMPLE = { tokens: params.has('sample') ? Number(params.get('sample')) : 200, temperature: 0.8, seed: 1234 };
const SAMPLE_EVERY = 2;
const sampleProblem = () => (Number.isInteger(SAMPLE.tokens) && SAMPLE.tokens >= 1 && SAMPLE.tokens <= SAMPLE_MAX ? null
  : `the address's sample=${params.get('sample')}: the sample length must be a whole number of characters from 1 to ${SAMPLE_MAX}`);

// Whether a resolved run configuration is a language model's (they alone have a context).
const isText = (options) => options.context != null;
const presetName = () => params.get('preset') || $('preset').value;
const resolve = (preset) => JSON.parse(Engine.options(JSON.stringify(preset)));

// ---- charts ------------------------------------------------------------------------
function redraw() {
  if (!run) return;
  const mark = run.switchEpoch;
  const markLabel = run.switch && !run.switch.decisions.some((d) => d.factorized) ? 'switch (none factorized)' : 'switch to low rank';
  const common = { mark, markLabel, xMax: run.options.epochs };
  const xLabel = run.text ? `evaluation (every ${run.options.eval_every} steps)` : 'epoch';
  const prev = previous && previous.text === run.text ? previous : null;
  const ghost = (name, points) => (prev && points.length ? [{ name: `${name}, previous run (${prev.label})`, points, ghost: true }] : []);
  if (run.text) {
    drawChart($('loss-chart'), [{ name: 'train loss', points: run.loss, dense: true }, { name: 'val loss', points: run.val }, ...ghost('val', prev?.val ?? [])],
      { ...common, xLabel, yMin: 0, format: (v) => v.toFixed(2) });
    drawChart($('acc-chart'), [{ name: 'val loss', points: run.val }, ...ghost('val', prev?.val ?? [])], { ...common, xLabel, yMin: 0, format: (v) => v.toFixed(3) });
  } else {
    drawChart($('loss-chart'), [{ name: 'train loss', points: run.loss, dense: true }, ...ghost('train', prev?.loss ?? [])], { ...common, xLabel, yMin: 0, format: (v) => v.toFixed(2) });
    drawChart($('acc-chart'), [{ name: 'test', points: run.acc }, ...ghost('test', prev?.acc ?? [])],
      { ...common, xLabel, yMin: 0, yMax: 100, unit: '%', format: (v) => `${v.toFixed(1)}%` });
  }
  const ranks = (run.tracked || []).map((name, i) => ({ name, points: run.ranks.map((r) => [r[0], r[1][i]]) }));
  drawChart($('rank-chart'), ranks, { ...common, xLabel, yMin: 0, format: (v) => v.toFixed(1),
    empty: run.options.cuttlefish ? 'measuring…' : 'Cuttlefish is off: no ranks are tracked' });
}
new ResizeObserver(() => redraw()).observe($('charts'));

function captions(text) {
  $('loss-caption').textContent = text ? 'Training and validation loss (nats/char)' : 'Training loss';
  $('acc-caption').textContent = text ? 'Validation loss (nats/char)' : 'Test accuracy';
}

// ---- UI helpers --------------------------------------------------------------------
const status = (text) => ($('status').textContent = text);
function buttons({ start, pause, reset, download }) {
  $('start').disabled = !start;
  $('pause').disabled = !pause;
  $('reset').disabled = !reset;
  $('download').disabled = !download;
}

// The settings are locked from Start until the run ends or is reset: a change made
// mid-run (or while paused) could not apply to the model already planned.
function lock(locked) {
  for (const el of document.querySelectorAll('#setup input, #setup select')) el.disabled = locked;
  if (!locked) {
    // What stays off when unlocked: a preset fixed by the address, data of the wrong kind.
    if (params.get('preset')) $('preset').disabled = true;
    syncDataChoices();
  }
  $('locked').hidden = !locked;
}

const seconds = (s) => (s < 90 ? `${Math.max(1, Math.round(s))} s` : `${Math.round(s / 60)} min`);

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
  app.running = app.pausing = app.paused = false;
  $('pause').textContent = 'Pause';
  buttons({ start: !lost, pause: false, reset: !lost, download: false });
  lock(false);
}

// ---- data --------------------------------------------------------------------------
// The data source the radio buttons name, with the preset's class-balanced subsets
// applied to whatever it is (a picked CIFAR-10 or folder too). Loaded on a pick, on a
// change of source or preset, and at Start; a source already loaded with the same
// subsets is not parsed again.
async function loadData(options) {
  const choice = document.querySelector('input[name=data]:checked').value;
  const [train, test] = [options.train_subset ?? 0, options.test_subset ?? 0];
  const picked = { cifar10: $('cifar-files'), folder: $('folder-files'), text: $('text-file') }[choice];
  const files = picked ? [...picked.files] : [];
  const key = JSON.stringify([choice, isText(options) ? 0 : train, isText(options) ? 0 : test, files.map((f) => [f.name, f.size, f.lastModified])]);
  if (loaded && loaded.key === key) return loaded.desc;
  loaded = null;
  let desc;
  if (isText(options)) {
    if (choice !== 'text' && choice !== 'builtin-text') throw new Error(`${options.model} trains on text: choose Tiny Shakespeare or a text file`);
    if (choice === 'text' && !files.length) throw new Error('choose a text file first (UTF-8, e.g. a .txt)');
    desc = JSON.parse(choice === 'text' ? engine.use_text(files[0].name, new Uint8Array(await files[0].arrayBuffer())) : engine.use_builtin_text());
  } else if (choice === 'builtin-text' || choice === 'text') {
    throw new Error(`${options.model} trains on images: choose an image data set, or the GPT preset for text`);
  } else if (choice === 'cifar10') {
    if (!files.length) throw new Error('choose the CIFAR-10 .bin files first (data_batch_1.bin … test_batch.bin)');
    const bytes = await Promise.all(files.map(async (f) => new Uint8Array(await f.arrayBuffer())));
    desc = JSON.parse(engine.use_cifar10(files.map((f) => f.name), bytes, train, test));
  } else if (choice === 'folder') {
    const images = files.filter((f) => /\.(png|jpe?g)$/i.test(f.name));
    if (!images.length) throw new Error('choose a folder holding train/<class>/ and test/<class>/ images (PNG or JPEG) first');
    const bytes = await Promise.all(images.map(async (f) => new Uint8Array(await f.arrayBuffer())));
    desc = JSON.parse(engine.use_folder(images.map((f) => f.webkitRelativePath || f.name), bytes, train, test));
  } else {
    desc = JSON.parse(engine.use_builtin(train, test));
  }
  loaded = { key, desc };
  // New data drops the engine's finished run: there is no model left to download.
  if (app.done) buttons({ start: true });
  return desc;
}

function describeData(d) {
  if (d.kind === 'text') return `${d.name}: ${d.train.toLocaleString()} training / ${d.val.toLocaleString()} validation characters, ${d.vocab} distinct.`;
  const of = (n, all) => (n < all ? `${n.toLocaleString()} of ${all.toLocaleString()}` : n.toLocaleString());
  const sub = d.train < d.train_available || d.test < d.test_available ? ' (class-balanced subsets: the preset\'s size)' : '';
  return `${d.name.replace(/\/train$/, '')}: ${of(d.train, d.train_available)} training / ${of(d.test, d.test_available)} test images${sub}, ` +
    `${d.channels}x${d.height}x${d.width}, ${d.classes.length} classes (${d.classes.join(', ')}).`;
}

// Shows what the chosen source holds (or what is wrong with it) without starting.
let refreshes = 0;
async function refreshData() {
  if (!engine || app.running || app.paused) return;
  const line = $('data-status');
  const mine = ++refreshes;
  try {
    const d = await loadData(resolve(PRESETS[presetName()] || PRESETS.quick));
    if (mine !== refreshes) return; // a later choice is being loaded
    line.textContent = describeData(d);
    line.className = 'muted';
    emit('data-line', { text: line.textContent });
  } catch (e) {
    if (mine !== refreshes) return;
    line.textContent = e.message || String(e);
    line.className = 'error';
    emit('data-line', { text: line.textContent, error: true });
  }
}

// ---- the run -----------------------------------------------------------------------
// A finished run stays on the charts, faintly, beside the next one.
function remember() {
  if (run && run.finished) previous = { text: run.text, label: run.label, loss: run.loss, acc: run.acc, val: run.val };
}

async function start() {
  remember();
  const name = presetName();
  const preset = PRESETS[name] || PRESETS.quick;
  buttons({});
  lock(true);
  app.done = false;
  app.error = null;
  app.paused = app.pausing = false;
  $('status').className = 'muted';
  for (const id of ['report-panel', 'grid-panel', 'samples-panel', 'notice']) $(id).hidden = true;
  $('samples').innerHTML = '';
  try {
    // URL overrides (e.g. ?preset=test&model=resnet6&factorize=auto) for trying variants.
    const overrides = Object.fromEntries(['model', 'factorize'].filter((k) => params.has(k)).map((k) => [k, params.get(k)]));
    if (!params.has('factorize') && $('factorize').value) overrides.factorize = $('factorize').value;
    // The whole run configuration, every key the engine knows at its value or default.
    const options = resolve({ ...preset, ...overrides, cuttlefish: $('cuttlefish').checked });
    if (isText(options) && sampleProblem()) throw new Error(sampleProblem());
    status('Loading the data…');
    const data = await loadData(options);
    $('data-status').textContent = describeData(data);
    $('data-status').className = 'muted';
    emit('data', { data });
    status('Planning the model and measuring the initial stable ranks…');
    const info = JSON.parse(await engine.start(JSON.stringify(options)));
    const text = isText(options);
    captions(text);
    const label = !options.cuttlefish ? 'Cuttlefish off' : `Cuttlefish, ${options.factorize === 'auto' ? 'auto' : options.factorize === 'reference' ? "the paper's layers" : 'listed layers'}`;
    run = { name, options, data, info, text, label, loss: [], acc: [], val: [], ranks: [], tracked: info.tracked, switchEpoch: null, epochs: [], switch: null, samples: [], started: performance.now() };
    if (info.initial_ranks) run.ranks.push([0, info.initial_ranks]);
    emit('start', { options, info, preset: name });
    redraw();
    await loop();
  } catch (e) {
    fail('start', e);
  }
}

// What the status line says of the time left, from the pace so far.
function eta(done) {
  if (!(done > 0)) return '';
  const spent = (performance.now() - run.started) / 1000;
  return `, about ${seconds((spent * (1 - done)) / done)} left`;
}

function onSwitch(report) {
  run.switch = report;
  run.switchEpoch = report.epoch;
  emit('switch', { report });
  redraw();
  // Each layer's decision is on the page from the switch on; the rest of the report
  // joins it at the end.
  const k = factorizedCount(run);
  fillReport([[k ? 'Switch to low rank' : 'Switch', `after epoch ${report.epoch}: ${k} of ${report.decisions.length} layers factorized${k ? '' : ' (every layer kept full-rank)'}`], ...layerRows(run)]);
}

// The status line at a readback `p` of epoch `epoch` (0-based), `done` of the run done.
function progressLine(epoch, p, done) {
  const { options } = run;
  if (p.step === p.steps) {
    return run.text ? `Evaluation ${epoch + 1}/${options.epochs}: measuring the validation loss and the stable ranks…`
      : `Epoch ${epoch + 1}/${options.epochs}: testing and measuring the stable ranks…`;
  }
  if (run.text) {
    const last = run.epochs.at(-1);
    const tps = last ? `, ${last.tokens_per_s.toFixed(0)} tokens/s` : '';
    return `Step ${epoch * p.steps + p.step}/${options.steps}: training loss ${p.loss.toFixed(3)} nats/char${tps}${eta(done)}.`;
  }
  const test = run.acc.length ? `; test accuracy after epoch ${epoch}: ${run.acc.at(-1)[1].toFixed(1)}%` : '';
  return `Epoch ${epoch + 1}/${options.epochs}, step ${p.step}/${p.steps}: training loss ${p.loss.toFixed(3)}, training accuracy so far ${(100 * p.acc).toFixed(1)}%${test}${eta(done)}.`;
}

async function loop() {
  app.running = true;
  app.paused = false;
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
      const done = (epoch + p.step / p.steps) / options.epochs;
      $('progress').style.width = `${100 * done}%`;
      // While pausing, the status keeps saying so.
      if (!app.pausing) status(progressLine(epoch, p, done));
      redraw();
    };
    if (run.switchNext && !app.pausing) {
      const how = options.factorize === 'auto' ? ', timing each layer full-rank and factorized on this GPU' : '';
      status(`The stable ranks have settled: switching to low rank (an SVD of each layer${how})…`);
    }
    let o;
    try {
      const pending = engine.run_epoch(onProgress);
      if (run.switchNext) emit('switching');
      o = JSON.parse(await pending);
    } catch (e) {
      return fail(`epoch ${epoch + 1}`, e);
    }
    run.switchNext = o.switch_next;
    if (o.paused) {
      // A switch made before the pause took hold is reported now, once.
      if (o.switch) onSwitch(o.switch);
      app.running = app.pausing = false;
      app.paused = true;
      emit('paused', { at: o.paused });
      status(`Paused in epoch ${o.paused.epoch}/${options.epochs} before step ${o.paused.step + 1}. Resume goes on from there; the settings stay as they were (Reset to change them).`);
      $('pause').textContent = 'Resume';
      buttons({ pause: true, reset: true, download: true });
      return;
    }
    if (o.switch) onSwitch(o.switch);
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
  if (!app.pausing) status(`Step ${step}: writing a sample…`);
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
  showNotice(report);
  if (run.text) {
    status(`Done in ${seconds((performance.now() - run.started) / 1000)}: validation loss ${report.val_loss.toFixed(3)} nats/char, character accuracy ${(100 * report.test_acc).toFixed(1)}%.`);
  } else {
    await showPredictions();
    status(`Done in ${seconds((performance.now() - run.started) / 1000)}: test accuracy ${(100 * report.test_acc).toFixed(2)}%.`);
  }
  run.finished = true;
  buttons({ start: true, reset: true, download: true });
  $('pause').textContent = 'Pause';
  app.running = app.paused = app.pausing = false;
  lock(false);
  app.memory.push(wasm.memory.buffer.byteLength);
  emit('report', { report, wasm_memory: wasm.memory.buffer.byteLength, factorized: factorizedCount() });
  app.done = true;
}

const factorizedCount = (r = run) => (r.switch ? r.switch.decisions.filter((d) => d.factorized).length : 0);

// The report's rows for `run` (its options, epochs and switch) and its final report `r`:
// [name, text] pairs. Nothing is called low-rank unless a layer was factorized.
function reportRows(run, r) {
  const epochs = run.epochs;
  const key = run.text ? 'tokens_per_s' : 'images_per_s';
  const unit = run.text ? 'tokens/s' : 'images/s';
  const rate = (after) => {
    const es = epochs.filter((e) => (run.switchEpoch !== null && e.epoch > run.switchEpoch) === after);
    return es.length ? `${(es.reduce((a, e) => a + e[key], 0) / es.length).toFixed(0)} ${unit}` : '–';
  };
  const k = factorizedCount(run);
  const switched = r.switch_epoch != null;
  const rows = [
    ...(run.text
      ? [['Validation loss', `${r.val_loss.toFixed(3)} nats/char (${(r.val_loss / Math.LN2).toFixed(3)} bits), character accuracy ${(100 * r.test_acc).toFixed(1)}%`]]
      : [['Test accuracy', `${(100 * r.test_acc).toFixed(2)}%`]]),
    ['Parameters', r.params_final < r.params_full
      ? `${r.params_full.toLocaleString()} → ${r.params_final.toLocaleString()} (${(r.params_full / r.params_final).toFixed(2)}x smaller)`
      : `${r.params_full.toLocaleString()} (unchanged: no layer was factorized)`],
  ];
  if (!run.options.cuttlefish) {
    rows.push(['Cuttlefish', 'off: trained full-rank throughout'], ['Speed', rate(false)], ['Training time', `${r.seconds_full_rank.toFixed(1)} s`]);
  } else if (!switched) {
    rows.push(['Switch', 'the stable ranks did not settle within this run: it stayed full-rank'], ['Speed', rate(false)], ['Training time', `${r.seconds_full_rank.toFixed(1)} s`]);
  } else if (k === 0) {
    rows.push(['Switch', `the stable ranks settled after epoch ${r.switch_epoch - 1}, but every layer was kept full-rank (see each layer below)`],
      ['Speed before / after the switch (both full-rank)', `${rate(false)} / ${rate(true)}`],
      ['Training time', `${(r.seconds_full_rank + r.seconds_low_rank).toFixed(1)} s`]);
  } else {
    rows.push(['Switch to low rank', `after epoch ${r.switch_epoch - 1}: ${k} of ${run.switch.decisions.length} layers factorized`],
      ['Chosen ranks', Object.entries(r.ranks).map(([name, v]) => `${name}: ${v}`).join(', ')],
      ['Speed full-rank / low-rank', `${rate(false)} / ${rate(true)}`],
      ['Training time full-rank / low-rank', `${r.seconds_full_rank.toFixed(1)} s / ${r.seconds_low_rank.toFixed(1)} s`]);
  }
  return [...rows, ...layerRows(run)];
}

// One row per layer the switch decided on: its rank and why it was (not) factorized.
function layerRows(run) {
  return (run.switch?.decisions ?? []).map((d) => {
    const t = d.full_ms != null ? `; median of ${d.samples} timings: full ${d.full_ms.toFixed(2)} ms, factorized ${d.factorized_ms.toFixed(2)} ms` : '';
    const why = d.reason ? ` (${d.reason})` : '';
    return [`  ${d.layer}`, `rank ${d.rank} of ${d.full_rank}: ${d.factorized ? 'factorized' : 'kept full-rank'}${why}${t}`];
  });
}

function fillReport(rows) {
  $('report').innerHTML = '';
  for (const [name, v] of rows) {
    const tr = $('report').insertRow();
    tr.insertCell().textContent = name;
    tr.insertCell().textContent = v;
  }
  $('report-panel').hidden = false;
}

const showReport = (r) => fillReport(reportRows(run, r));

// What a visitor should know when Cuttlefish did less than the page promises: the
// switch came but every layer stayed full-rank (and why: `auto`'s timings, with the
// forced choice one click away), or the ranks never settled. `{ text, offerForced }`,
// text null when there is nothing to say.
function noticeFor(run, r) {
  if (!run.options.cuttlefish) return { text: null, offerForced: false };
  if (r.switch_epoch != null && factorizedCount(run) === 0) {
    const timed = run.switch.decisions.filter((d) => d.full_ms != null);
    if (timed.length && run.options.factorize === 'auto') {
      const list = timed.map((d) => `${d.layer} ${d.full_ms.toFixed(2)} ms full vs ${d.factorized_ms.toFixed(2)} ms factorized`).join('; ');
      return { offerForced: true, text: `Cuttlefish found the ranks (the switch line) but kept every layer full-rank: "auto" times each layer both ways on this GPU and factorizes only what gets faster, and none did here (${list}). ` +
        'On a software adapter the saved arithmetic rarely pays for the extra pass. The paper\'s fixed choice factorizes anyway:' };
    }
    return { offerForced: false, text: 'Cuttlefish found the ranks (the switch line), but no layer\'s factor pair would have been smaller than the layer, so every layer stayed full-rank.' };
  }
  if (r.switch_epoch == null) {
    return { offerForced: false, text: 'The stable ranks were still moving when this run ended, so Cuttlefish never switched. A longer preset gives them time to settle.' };
  }
  return { text: null, offerForced: false };
}

function showNotice(r, of = run) {
  const { text, offerForced } = noticeFor(of, r);
  $('notice-action').hidden = !offerForced;
  $('notice').hidden = !text;
  if (text) $('notice-text').textContent = text;
  emit('notice', { text });
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
  emit('predictions', { right: predictions.filter((p, i) => p === labels[i]).length, shown: labels.length, labels });
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
  remember();
  try {
    engine.reset();
  } catch (e) {
    return fail('reset', e);
  }
  run = null;
  app.done = app.paused = app.pausing = false;
  for (const id of ['loss-chart', 'acc-chart', 'rank-chart']) $(id).getContext('2d').clearRect(0, 0, 1e4, 1e4);
  $('progress').style.width = '0';
  for (const id of ['report-panel', 'grid-panel', 'samples-panel', 'notice']) $(id).hidden = true;
  $('samples').innerHTML = '';
  $('pause').textContent = 'Pause';
  status('Ready.');
  buttons({ start: true });
  lock(false);
  emit('reset');
}

// Asks for a pause; it takes hold before the next training step, whatever runs now.
function pauseRun() {
  if (!app.running || app.pausing) return;
  app.pausing = true;
  engine.pause();
  $('pause').textContent = 'Pausing…';
  $('pause').disabled = true;
  const last = app.events.findLast((e) => ['progress', 'switching', 'epoch'].includes(e.kind));
  const busy = last?.kind === 'switching' ? ': the switch to low rank in progress finishes first'
    : last?.kind === 'progress' && last.step === last.steps ? ': the evaluation and rank measurement in progress finish first'
      : ' before the next step';
  status(`Pausing…${busy}`);
  emit('pausing');
}

function resumeRun() {
  if (!app.paused) return Promise.resolve();
  engine.resume();
  status('Resuming…');
  emit('resumed');
  return loop();
}

// ---- the data choices follow the preset ------------------------------------------
// A GPT preset trains on text and the others on images: the radio buttons of the other
// kind are disabled, and a choice of the wrong kind moves to that kind's built-in data.
function presetIsText(name) {
  return isText(resolve(PRESETS[name] || PRESETS.quick));
}

function syncDataChoices() {
  const kind = presetIsText(presetName()) ? 'text' : 'images';
  for (const r of document.querySelectorAll('input[name=data]')) r.disabled = r.dataset.kind !== kind;
  const checked = document.querySelector('input[name=data]:checked');
  if (!checked || checked.disabled) document.querySelector(`input[name=data][value=${kind === 'text' ? 'builtin-text' : 'builtin'}]`).checked = true;
}

// Picking files chooses their source (and a preset of the right kind).
function picked(source, kind) {
  if (presetIsText($('preset').value) !== (kind === 'text') && !$('preset').disabled) {
    $('preset').value = kind === 'text' ? 'gpt' : defaultPreset();
    onPreset({ refresh: false });
  }
  syncDataChoices();
  const r = document.querySelector(`input[name=data][value=${source}]`);
  if (!r.disabled) r.checked = true;
  refreshData();
}

function onPreset({ refresh = true } = {}) {
  const p = resolve(PRESETS[presetName()] || PRESETS.quick);
  $('factorize').value = ['auto', 'reference'].includes(p.factorize) ? p.factorize : '';
  syncDataChoices();
  if (refresh) refreshData();
}

const defaultPreset = () => (app.software ? 'quick-software' : 'quick');

$('preset').onchange = () => onPreset();
for (const r of document.querySelectorAll('input[name=data]')) r.onchange = refreshData;
$('cifar-files').onchange = () => $('cifar-files').files.length && picked('cifar10', 'images');
$('folder-files').onchange = () => $('folder-files').files.length && picked('folder', 'images');
$('text-file').onchange = () => $('text-file').files.length && picked('text', 'text');

// ---- start-up ----------------------------------------------------------------------
// No adapter: say which browsers and switches give one (not the command line's advice).
const NO_WEBGPU = 'This browser has no WebGPU. It works in Chrome and Edge 113 or later on Windows, macOS, ChromeOS and Android (on Linux, start them with <code>--enable-unsafe-webgpu</code>; <code>chrome://gpu</code> shows why WebGPU is off), in Safari 26, and in Firefox 141 or later on Windows (elsewhere set <code>dom.webgpu.enabled</code> in about:config).';
const NO_ADAPTER = 'This browser has WebGPU but offers no GPU adapter to this page: WebGPU is off or blocked for this GPU or driver. ' +
  'In Chrome or Edge on Linux, start the browser with <code>--enable-unsafe-webgpu</code> (and <code>--enable-features=Vulkan</code> where Vulkan is off); <code>chrome://gpu</code> shows whether WebGPU is enabled and why not. ' +
  'In Firefox, set <code>dom.webgpu.enabled</code> (and <code>gfx.webgpu.ignore-blocklist</code> for a blocked driver) in about:config. ' +
  'Chrome and Edge on Windows and macOS, and Safari 26, have WebGPU on by default.';

function noGpu(html, why) {
  // Nothing can train: the setup and the charts would only be empty boxes.
  $('setup').hidden = true;
  $('charts').hidden = true;
  $('adapter').innerHTML = html;
  $('adapter-panel').className = 'panel error';
  status('No WebGPU adapter: nothing can train here.');
  app.error = why;
  emit('no-adapter', { why });
}

async function main() {
  wasm = await init();
  PRESETS = JSON.parse(Engine.presets());
  if (!navigator.gpu) return noGpu(NO_WEBGPU, 'no WebGPU');
  const js = await navigator.gpu.requestAdapter({ powerPreference: 'high-performance' }).catch(() => null);
  if (!js) return noGpu(NO_ADAPTER, 'no WebGPU adapter');
  try {
    engine = await Engine.open();
  } catch (e) {
    $('adapter').textContent = `The GPU adapter could not be opened: ${e.message || e}`;
    $('adapter-panel').className = 'panel error';
    app.error = String(e.message || e);
    return;
  }
  const a = JSON.parse(engine.adapter());
  const info = js.info ? [js.info.vendor, js.info.architecture, js.info.description].filter(Boolean).join(' ') : '';
  const fallback = !!(js.info?.isFallbackAdapter ?? js.isFallbackAdapter);
  app.software = fallback || a.cpu || /swiftshader|llvmpipe|lavapipe|software|warp/i.test(`${info} ${a.name} ${a.driver}`);
  $('adapter').innerHTML = '';
  const line = document.createElement('span');
  line.textContent = `${info || a.name || 'unnamed adapter'}${app.software ? ' — a software adapter (the CPU stands in for a GPU): expect it to be slow; the default run is sized for it' : ''}. ` +
    `Storage binding ${(a.max_storage_binding / 2 ** 20).toFixed(0)} MiB, buffer ${(a.max_buffer / 2 ** 20).toFixed(0)} MiB, ` +
    `${a.max_workgroup_invocations} invocations and ${(a.max_workgroup_storage / 1024).toFixed(0)} KiB shared memory per workgroup` +
    `${a.subgroups ? ', subgroups' : ''}${a.timestamps ? ', timestamp queries' : ''}.`;
  $('adapter').append(line);
  emit('adapter', { adapter: a, info, fallback, software: app.software, ready_s: performance.now() / 1000 });
  // The menu: on a software adapter its own quick preset comes first and is chosen.
  const menu = app.software ? [MENU[1], MENU[0], ...MENU.slice(2)] : MENU.filter(([k]) => k !== 'quick-software');
  $('preset').innerHTML = '';
  for (const [k, text] of menu) $('preset').append(new Option(text, k));
  $('preset').value = defaultPreset();
  if (params.get('preset')) {
    $('preset').append(new Option(`${params.get('preset')} (from the address)`, params.get('preset')));
    $('preset').value = params.get('preset');
  }
  for (const [id, text] of [['loss-chart', 'the training loss appears here'], ['acc-chart', 'the test accuracy after each epoch'], ['rank-chart', "each layer's stable rank, then the switch"]]) {
    drawChart($(id), [], { empty: text });
  }
  app.ready = true;
  status('Ready: press Start.');
  buttons({ start: true });
  lock(false);
  onPreset();
  if (params.has('autostart')) start();
}

$('start').onclick = start;
$('pause').onclick = () => (app.running ? pauseRun() : resumeRun());
$('reset').onclick = reset;
$('download').onclick = () => download().catch((e) => fail('download', e));
$('notice-action').onclick = () => {
  $('factorize').value = 'reference';
  emit('forced');
  start();
};
window.cuttleApp = { start, reset, pause: pauseRun, resume: resumeRun, download, reportRows, noticeFor, showNotice, lastRun: () => run,
  loseDevice: () => engine.destroy_device_for_test() };
main().catch((e) => fail('loading', e));
