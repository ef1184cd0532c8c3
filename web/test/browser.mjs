// The headless browser test of the demo page: Debian's chromium (driven by playwright-core)
// on its SwiftShader WebGPU adapter, the page served by a small node server (serve.mjs).
//
// 1. The default run as a visitor gets it: no address parameters, the Start button. On a
//    software adapter the page must pick the preset sized for it and finish (its wall time
//    is printed); on the way the test pauses at an epoch boundary and during the switch
//    (nothing may be lost: every epoch and the switch reported once, the report true to
//    what happened), and looks at the page at 1400 px and 390 px (screenshots; the charts
//    in one row, nothing wider than a phone). Where `auto` kept every layer the page must
//    say so with the timings, and its one-click forced run must factorize: that run is
//    followed to its switch, then paused and reset (the post-switch epochs of a forced
//    run are what the ViT and GPT runs below train to the end).
// 2. The pickers: CIFAR-10 batches and an image folder (small generated files) select
//    their source and describe the data at the preset's class-balanced size; a bad file
//    names what is wrong and replaces the earlier description; a text file picks the GPT.
// 3. The `vit-test` preset, a device lost mid-run (the page says so), and `gpt-test`
//    three times in one tab (validation loss falls, the switch, samples of text, wasm
//    memory flat; samples of 40 characters, `?sample=40`, as each costs a forward pass
//    per character), and a bad `?sample=` named with its range. The `test` preset (the
//    small CNN with the paper's layers) is what firefox.mjs trains.
// 4. Chromium without --enable-unsafe-webgpu: the page names the flag and chrome://gpu.
//
// Fails on any console error or page error. Prints one JSON line of figures (with each
// section's wall time in `sections_s`); screenshots
// and the console log go to web/test/out/. Usage: node web/test/browser.mjs (after
// web/build.sh); env CHROMIUM (default /usr/bin/chromium), TIMEOUT_S.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { serveWeb, WEB } from './serve.mjs';
import { writeFixtures } from './fixtures.mjs';

const OUT = path.join(WEB, 'test', 'out');
const TIMEOUT = 1000 * +(process.env.TIMEOUT_S || 600);
fs.mkdirSync(OUT, { recursive: true });

function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
}

// Where a run's time went, from the page's event times (the first run in `events`):
// start to the first step's readback (data, planning, initial ranks), the whole run, and
// the text samples written between evaluations.
function phases(all) {
  const events = all.slice(0, all.findIndex((e) => e.kind === 'report') + 1);
  const at = (kind) => events.find((e) => e.kind === kind)?.t;
  const sampleMs = events.reduce((sum, e, i) => sum + (e.kind === 'sample' ? e.t - events.findLast((x, j) => j < i && x.kind === 'epoch').t : 0), 0);
  const s = (ms) => +(ms / 1000).toFixed(1);
  return { to_first_step_s: s(at('progress') - at('start')), run_s: s(at('report') - at('start')), ...(sampleMs ? { samples_s: s(sampleMs) } : {}) };
}

const { server, url } = await serveWeb();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cuttle-browser-'));
const fixtures = writeFixtures(tmp);
const log = [];
const problems = [];
const contexts = [];
const figures = {};
let code = 1;

async function browser(flags) {
  const profile = fs.mkdtempSync(path.join(tmp, 'profile-'));
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    // Playwright's own --headless would clash with --headless=new.
    ignoreDefaultArgs: ['--headless'],
    args: ['--headless=new', '--no-sandbox', ...flags, '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
    viewport: { width: 1400, height: 900 },
    timeout: 60000,
  });
  contexts.push(ctx);
  const page = ctx.pages()[0] ?? (await ctx.newPage());
  page.on('console', (m) => {
    log.push(`[${m.type()}] ${m.text()}`);
    if (m.type() === 'error') problems.push(`console error: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.stack || e}`));
  page.on('crash', () => problems.push('the page crashed'));
  return page;
}

try {
  const t0 = Date.now();
  let tLap = t0;
  figures.sections_s = {};
  const lap = (name) => {
    figures.sections_s[name] = (Date.now() - tLap) / 1000;
    tLap = Date.now();
  };
  const page = await browser(['--enable-unsafe-webgpu']);
  const state = () => page.evaluate(() => window.cuttle);
  const finished = () => page.waitForFunction(() => window.cuttle.done || window.cuttle.error, null, { timeout: TIMEOUT, polling: 250 });
  const events = async (kind) => (await state()).events.filter((e) => e.kind === kind);
  const noProblems = () => check(problems.length === 0, problems.join('\n'));

  // ---- 1. the default run, as a visitor meets it --------------------------------------
  await page.goto(url);
  await page.waitForFunction(() => window.cuttle.ready || window.cuttle.error, null, { timeout: 120000 });
  let s = await state();
  check(!s.error, `the page reported an error: ${s.error}`);
  const adapter = s.events.find((e) => e.kind === 'adapter');
  const preset = await page.inputValue('#preset');
  check(preset === (adapter.software ? 'quick-software' : 'quick'), `the default preset fits the adapter (software: ${adapter.software}): ${preset}`);
  await page.waitForFunction(() => window.cuttle.events.some((e) => e.kind === 'data-line'));
  check(/fashion-mnist.*600 of .* training/i.test(await page.textContent('#data-status')) || !adapter.software, `the data line names the preset's subset: ${await page.textContent('#data-status')}`);
  // The test's hands: a pause at the first epoch boundary (asked as the epoch's figures
  // arrive, so it lands in the gap before the next epoch), and one during the switch.
  await page.evaluate(() => {
    let asked = 0;
    window.cuttle.onEvent = (e) => {
      if (e.kind === 'epoch' && asked === 0) {
        asked = 1;
        window.cuttleApp.pause();
      } else if (e.kind === 'switching' && asked === 1) {
        asked = 2;
        setTimeout(() => window.cuttleApp.pause(), 30);
      }
    };
  });
  const tDefault = Date.now();
  await page.click('#start');
  const pausedCount = async (n) => page.waitForFunction((n) => window.cuttle.events.filter((e) => e.kind === 'paused').length >= n, n, { timeout: TIMEOUT, polling: 100 });
  await pausedCount(1);
  s = await state();
  const p1 = s.events.filter((e) => e.kind === 'paused')[0];
  check(p1.at.epoch === 2 && p1.at.step === 0, `the first pause holds at the start of epoch 2: ${JSON.stringify(p1.at)}`);
  check(s.paused && !s.running, 'the page is paused');
  check((await page.textContent('#pause')) === 'Resume' && !(await page.isDisabled('#pause')) && !(await page.isDisabled('#reset')), 'Resume and Reset are enabled while paused');
  check(await page.isDisabled('#preset') && await page.isVisible('#locked'), 'the settings are locked, visibly, while paused');
  check(s.events.some((e) => e.kind === 'pausing'), 'the page said it was pausing');
  await page.click('#pause');
  const switchPause = await Promise.race([
    pausedCount(2).then(() => true),
    page.waitForFunction(() => window.cuttle.done || window.cuttle.error, null, { timeout: TIMEOUT }).then(() => false),
  ]);
  s = await state();
  check(!s.error, `the page reported an error: ${s.error}`);
  if (switchPause) {
    const p2 = s.events.filter((e) => e.kind === 'paused')[1];
    const i2 = s.events.indexOf(s.events.filter((e) => e.kind === 'paused')[1]);
    const sw = s.events.findIndex((e) => e.kind === 'switch');
    check(sw >= 0 && sw < i2 && p2.at.step === 0, `a pause during the switch keeps the switch and holds before the first low-rank step: ${JSON.stringify(p2)}`);
    check(/Paused/.test(await page.textContent('#status')), 'the status says paused');
    const rows = await page.textContent('#report');
    check(await page.isVisible('#report-panel') && s.events[sw].report.decisions.every((d) => rows.includes(d.layer)), `each layer's decision is on the page while paused: ${rows}`);
    await page.screenshot({ path: path.join(OUT, 'paused-after-switch.png'), fullPage: true });
    await page.click('#pause');
  }
  await finished();
  const defaultWall = (Date.now() - tDefault) / 1000;
  s = await state();
  check(!s.error, `the default run reported an error: ${s.error}`);
  const options = s.events.find((e) => e.kind === 'start').options;
  const epochs = s.events.filter((e) => e.kind === 'epoch');
  check(epochs.length === options.epochs && epochs.every((e, i) => e.report.epoch === i + 1), `every epoch reported once: ${epochs.map((e) => e.report.epoch)}`);
  const switches = s.events.filter((e) => e.kind === 'switch');
  check(switches.length === 1, `the default run switches, reported once (${switches.length}): the stable ranks settle within it`);
  check(switchPause, 'the pause asked during the switch held (the run did not finish instead)');
  const done = s.events.find((e) => e.kind === 'report');
  const report = done.report;
  const reportText = await page.textContent('#report');
  if (done.factorized === 0) {
    check(report.params_final === report.params_full && /unchanged/.test(reportText) && !/low-rank/i.test(reportText.replace(/switch to low rank/gi, '')),
      `a report with nothing factorized calls nothing low-rank: ${reportText}`);
  } else {
    check(report.params_final < report.params_full && /smaller/.test(reportText), `a factorized run reports fewer parameters: ${reportText}`);
  }
  const grid = s.events.find((e) => e.kind === 'predictions');
  check(new Set(grid.labels).size >= Math.min(10, grid.labels.length / 2), `the prediction grid samples across classes: ${grid.labels}`);
  const firstStep = s.events.find((e) => e.kind === 'first-step');
  figures.default = { preset, wall_s: defaultWall, page_ready_s: +(adapter.ready_s).toFixed(2), load_to_first_readback_s: +firstStep.since_load_s.toFixed(2), factorized: done.factorized, test_acc: report.test_acc, params: [report.params_full, report.params_final],
    steps_per_s: epochs.map((e) => +e.steps_per_s.toFixed(2)) };
  // The page as a visitor sees it: 1400 px (the three charts in one row) and a phone.
  const tops = await page.$$eval('.charts figure', (fs) => fs.map((f) => Math.round(f.getBoundingClientRect().top)));
  check(tops.length === 3 && new Set(tops).size === 1, `the three charts share a row at 1400 px: ${tops}`);
  await page.screenshot({ path: path.join(OUT, 'default-1400.png'), fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(300);
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  check(wide <= 390, `nothing is wider than a 390 px phone: ${wide} px`);
  await page.screenshot({ path: path.join(OUT, 'default-390.png'), fullPage: true });
  await page.setViewportSize({ width: 1400, height: 900 });
  // The words for a run where every layer stayed full-rank, whatever this adapter's
  // timings chose: the same run and report with nothing factorized.
  const kept = await page.evaluate(() => {
    const run = structuredClone(window.cuttleApp.lastRun());
    const report = structuredClone(window.cuttle.events.filter((e) => e.kind === 'report').at(-1).report);
    for (const d of run.switch.decisions) d.factorized = false;
    [report.params_final, report.ranks] = [report.params_full, {}];
    const rows = window.cuttleApp.reportRows(run, report).map((r) => r.join(' ')).join('\n');
    return { rows, notice: window.cuttleApp.noticeFor(run, report), run, report };
  });
  check(/unchanged/.test(kept.rows) && !/low-rank/i.test(kept.rows), `with nothing factorized the report calls nothing low-rank: ${kept.rows}`);
  check(kept.notice.offerForced && /kept every layer full-rank/.test(kept.notice.text) && / ms full vs .* ms factorized/.test(kept.notice.text),
    `auto keeping every layer is explained with its timings: ${kept.notice.text}`);
  if (done.factorized === 0) {
    check(await page.isVisible('#notice-action') && (await page.textContent('#notice-text')) === kept.notice.text, 'this run\'s notice is on the page');
  } else {
    check(!(await page.isVisible('#notice')), 'no notice when auto factorized');
    // Show the notice as that run would have, to press its button.
    await page.evaluate(({ run, report }) => window.cuttleApp.showNotice(report, run), kept);
  }
  lap('default');
  // One click: the forced choice (the paper's layers) on the same preset, followed to its
  // switch: a pause asked as the switch begins holds before the first low-rank step, with
  // the switch reported (as in the default run); then Reset.
  const before = (await state()).events.length;
  await page.evaluate(() => {
    window.cuttle.onEvent = (e) => {
      if (e.kind === 'switching') setTimeout(() => window.cuttleApp.pause(), 30);
    };
  });
  await page.click('#notice-action');
  await Promise.race([pausedCount(3), finished()]);
  s = await state();
  check(s.paused, `the pause asked at the forced run's switch held: ${s.events.slice(before).map((e) => e.kind).filter((k) => k !== 'progress').join(' ')}`);
  check(!s.error, `the forced run reported an error: ${s.error}`);
  const forcedStart = s.events.slice(before).find((e) => e.kind === 'start');
  const forcedSwitch = s.events.slice(before).find((e) => e.kind === 'switch').report;
  const forcedK = forcedSwitch.decisions.filter((d) => d.factorized).length;
  check(forcedStart.options.factorize === 'reference' && forcedStart.preset === preset, `the button reruns the preset with the paper's layers: ${JSON.stringify(forcedStart.options.factorize)}`);
  check(forcedK > 0 && forcedSwitch.params_after < forcedSwitch.params_before, `the one-click forced run factorizes: ${JSON.stringify(forcedSwitch)}`);
  check(/factorized/.test(await page.textContent('#report')), 'the forced run\'s decisions are on the page at its switch');
  figures.forced = { switch_after_epoch: forcedSwitch.epoch, factorized: forcedK, params: [forcedSwitch.params_before, forcedSwitch.params_after] };
  await page.screenshot({ path: path.join(OUT, 'forced-1400.png'), fullPage: true });
  await page.click('#reset');
  s = await state();
  check(s.events.at(-1).kind === 'reset' && !s.running && !s.paused && !(await page.isDisabled('#start')), 'Reset after a pause leaves the page ready to start');
  noProblems();
  lap('forced');

  // ---- 2. the pickers --------------------------------------------------------------
  await page.goto(url);
  await page.waitForFunction(() => window.cuttle.ready);
  const dataLine = async (n) => {
    await page.waitForFunction((n) => window.cuttle.events.filter((e) => e.kind === 'data-line').length >= n, n, { timeout: 60000 });
    return (await events('data-line')).at(-1);
  };
  let lines = (await events('data-line')).length;
  await page.setInputFiles('#cifar-files', fixtures.cifar);
  let line = await dataLine(++lines);
  check(await page.isChecked('input[value=cifar10]'), 'picking CIFAR-10 files selects that source');
  const sub = adapter.software ? ['600 of 700', '300 of 400'] : ['700', '400'];
  check(!line.error && sub.every((x) => line.text.includes(x)) && /class-balanced/.test(line.text) === adapter.software, `the CIFAR-10 line, at the preset's subset: ${line.text}`);
  await page.setInputFiles('#cifar-files', [fixtures.bad, fixtures.cifar[1]]);
  line = await dataLine(++lines);
  check(line.error && /data_batch_1\.bin/.test(line.text) && !/700/.test(await page.textContent('#data-status')), `a bad batch is named and replaces the old line: ${line.text}`);
  check(await page.getAttribute('#data-status', 'class') === 'error', 'the bad file\'s line is shown as an error');
  await page.setInputFiles('#folder-files', fixtures.folder);
  line = await dataLine(++lines);
  check(await page.isChecked('input[value=folder]'), 'picking a folder selects that source');
  check(!line.error && /36 training \/ 15 test images/.test(line.text) && /3 classes \(blue, green, red\)/.test(line.text), `the folder line: ${line.text}`);
  await page.setInputFiles('#text-file', fixtures.text);
  line = await dataLine(++lines);
  check(await page.isChecked('input[value=text]') && (await page.inputValue('#preset')) === 'gpt', 'picking a text file selects it and the GPT preset');
  check(!line.error && /poem\.txt/.test(line.text) && /characters/.test(line.text), `the text line: ${line.text}`);
  noProblems();

  lap('pickers');

  // ---- 3. the short presets: ViT, a lost device, the GPT (memory over repeated runs) --
  await page.goto(`${url}?preset=vit-test&autostart=1`);
  await finished();
  const v = await state();
  check(!v.error, `the ViT run reported an error: ${v.error}`);
  const vEpochs = v.events.filter((e) => e.kind === 'epoch');
  const vFirst = v.events.find((e) => e.kind === 'progress');
  check(vEpochs.length === 3 && vEpochs.at(-1).report.train_loss < vFirst.loss, `ViT: 3 epochs (the switch before the last), the loss goes down: ${vFirst?.loss} -> ${vEpochs.at(-1)?.report.train_loss}`);
  const vReport = v.events.find((e) => e.kind === 'report').report;
  // The reference layers are factorized where their factor pair is smaller than the
  // layer (the break-even guard keeps the rest full-rank): at least one.
  const vRanks = Object.keys(vReport.ranks || {});
  check(vReport.switch_epoch && vRanks.length >= 1 && vReport.params_final < vReport.params_full, `the ViT report lists its factorized layers: ${JSON.stringify(vReport)}`);
  await page.screenshot({ path: path.join(OUT, 'vit.png'), fullPage: true });
  figures.vit = { steps_per_s: vEpochs.map((e) => +e.steps_per_s.toFixed(2)), ...phases(v.events) };
  noProblems();
  lap('vit');

  const fourth = page.evaluate(() => window.cuttleApp.start());
  await page.waitForFunction(() => window.cuttle.running && window.cuttle.events.at(-1).kind === 'progress', null, { timeout: TIMEOUT });
  await page.evaluate(() => window.cuttleApp.loseDevice());
  await page.waitForFunction(() => window.cuttle.error, null, { timeout: 60000 });
  await fourth;
  const lostText = await page.textContent('#status');
  check(/lost/i.test(lostText), `the page says the device was lost: ${lostText}`);
  lap('a lost device');

  await page.goto(`${url}?preset=gpt-test&autostart=1&sample=40`);
  await finished();
  let g = await state();
  check(!g.error, `the GPT run reported an error: ${g.error}`);
  const gEpochs = g.events.filter((e) => e.kind === 'epoch');
  const gOptions = g.events.find((e) => e.kind === 'start').options;
  check(gEpochs.length === gOptions.epochs && gEpochs.length >= 2, `GPT: ${gOptions.epochs} evaluations reported, got ${gEpochs.length}`);
  const gVal = gEpochs.map((e) => e.report.test_loss);
  check(gVal.every(Number.isFinite) && gVal.at(-1) < gVal[0], `GPT validation loss goes down: ${gVal.join(', ')}`);
  check(g.events.some((e) => e.kind === 'switch'), 'the GPT run reaches the switch');
  const samples = g.events.filter((e) => e.kind === 'sample');
  const shown = await page.locator('#samples .sample pre').allTextContents();
  check(samples.length >= 1 && shown.length === samples.length && shown[0] === samples[0].text, `the samples are on the page: ${JSON.stringify(shown)}`);
  check(!(await page.isVisible('#grid-panel')), 'no image grid for a text run');
  await page.screenshot({ path: path.join(OUT, 'gpt.png'), fullPage: true });
  for (let i = 0; i < 2; i++) await page.evaluate(() => window.cuttleApp.start());
  g = await state();
  check(!g.error && g.memory.length === 3 && g.memory[2] <= g.memory[1] * 1.02, `three GPT runs, memory flat: ${g.error} ${g.memory}`);
  check(g.events.filter((e) => e.kind === 'sample').at(-1).text === samples.at(-1).text, 'the same seed gives the same last sample in every run');
  figures.gpt = { val_loss: gVal.map((x) => +x.toFixed(3)), tokens_per_s: gEpochs.map((e) => +e.report.tokens_per_s.toFixed(0)), first_sample: samples[0].text, ...phases(g.events) };
  noProblems();
  lap('gpt, three runs');

  // A bad address parameter is a one-line error naming it and its range, not a run.
  await page.goto(`${url}?preset=gpt-test&autostart=1&sample=0`);
  await page.waitForFunction(() => window.cuttle.error, null, { timeout: 60000 });
  g = await state();
  check(/sample=0.*from 1 to 2000/.test(g.error) && !g.events.some((e) => e.kind === 'progress'), `a bad sample length is named with its range: ${g.error}`);
  noProblems();

  // ---- 4. chromium as a Linux visitor starts it: no --enable-unsafe-webgpu -----------
  const plain = await browser([]);
  await plain.goto(url);
  await plain.waitForFunction(() => window.cuttle.ready || window.cuttle.error, null, { timeout: 60000 });
  const p = await plain.evaluate(() => window.cuttle);
  const advice = await plain.textContent('#adapter');
  if (p.ready) {
    console.log('note: this chromium offers a WebGPU adapter without --enable-unsafe-webgpu; the no-adapter advice was not seen');
  } else {
    check(/--enable-unsafe-webgpu/.test(advice) && !/apt-get/.test(advice), `without the flag the page names it: ${advice}`);
    check(p.error !== 'no WebGPU adapter' || /chrome:\/\/gpu/.test(advice), `no adapter: the page points at chrome://gpu: ${advice}`);
  }
  figures.flagless = { error: p.error, advice_names_flag: /--enable-unsafe-webgpu/.test(advice) };
  await plain.screenshot({ path: path.join(OUT, 'no-adapter.png') });
  noProblems();
  lap('without the flag');

  console.log(JSON.stringify({ test: 'browser', ok: true, adapter: adapter.info || adapter.adapter.name, software: adapter.software, ...figures, wall_s: (Date.now() - t0) / 1000 }));
  code = 0;
} catch (e) {
  console.error(`browser test FAILED: ${e.message}`);
  for (const p of problems) console.error(p);
  code = 1;
} finally {
  fs.writeFileSync(path.join(OUT, 'console.log'), log.join('\n') + '\n');
  for (const ctx of contexts) await ctx.close().catch(() => {});
  server.close();
  fs.rmSync(tmp, { recursive: true, force: true });
}
process.exit(code);
