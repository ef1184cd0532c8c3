// The headless browser test of the demo page: Debian's chromium (driven by playwright-core)
// on its SwiftShader WebGPU adapter loads the page served by `cuttle serve`, trains the
// tiny `test` preset to the end (through the Cuttlefish switch), then runs twice more,
// pausing and resuming the second run, and checks that wasm memory stays flat; then the
// vision transformer preset `vit-test` and the character GPT preset `gpt-test` (on the
// built-in text: the validation loss falls, the switch happens, samples of text appear),
// (the GPT three times in one tab for the same memory check; the ViT once: the CNN and
// GPT parts already show memory flat over runs), and a device lost mid-run.
//
// Fails on any console error or page error, on a loss that does not go down, on a run
// that never switches, on a missing report or prediction grid. Prints one JSON line of
// figures (steps/s in the browser, page load to first readback). Screenshot and log go to
// web/test/out/. Usage: node web/test/browser.mjs (after web/build.sh); env CUTTLE_BIN
// (default target/debug/cuttle), CHROMIUM (default /usr/bin/chromium), TIMEOUT_S.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const WEB = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const ROOT = path.resolve(WEB, '..');
const OUT = path.join(WEB, 'test', 'out');
const TIMEOUT = 1000 * +(process.env.TIMEOUT_S || 600);
fs.mkdirSync(OUT, { recursive: true });

function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
}

// `cuttle serve --port 0` prints the address it got.
async function serve() {
  const bin = process.env.CUTTLE_BIN || path.join(ROOT, 'target', 'debug', 'cuttle');
  const child = spawn(bin, ['serve', '--port', '0', '--dir', WEB], { stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise((resolve, reject) => {
    let text = '';
    child.stdout.on('data', (d) => {
      text += d;
      const m = text.match(/http:\/\/127\.0\.0\.1:\d+\//);
      if (m) resolve(m[0]);
    });
    child.on('exit', (code) => reject(new Error(`cuttle serve exited (${code}) before printing its address`)));
  });
  return { child, url };
}

const { child: server, url } = await serve();
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'cuttle-chromium-'));
const log = [];
const problems = [];
let ctx;
let code = 1;
try {
  ctx = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    // Playwright's own --headless would clash with --headless=new.
    ignoreDefaultArgs: ['--headless'],
    args: ['--headless=new', '--no-sandbox', '--enable-unsafe-webgpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
    timeout: 60000,
  });
  const page = ctx.pages()[0] ?? (await ctx.newPage());
  page.on('console', (m) => {
    log.push(`[${m.type()}] ${m.text()}`);
    if (m.type() === 'error') problems.push(`console error: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.stack || e}`));
  page.on('crash', () => problems.push('the page crashed'));

  const t0 = Date.now();
  await page.goto(`${url}?preset=test&autostart=1`);
  const finished = () => page.waitForFunction(() => window.cuttle.done || window.cuttle.error, null, { timeout: TIMEOUT, polling: 250 });
  await finished();
  const state = async () => page.evaluate(() => window.cuttle);
  let s = await state();
  check(!s.error, `the page reported an error: ${s.error}`);
  await page.screenshot({ path: path.join(OUT, 'page.png'), fullPage: true });
  const first = s.events.find((e) => e.kind === 'progress');
  const epochs = s.events.filter((e) => e.kind === 'epoch');
  const report = s.events.find((e) => e.kind === 'report').report;
  check(epochs.length === 4, `4 epochs reported, got ${epochs.length}`);
  const lastLoss = epochs.at(-1).report.train_loss;
  check(first && lastLoss < first.loss, `loss goes down: first readback ${first?.loss}, last epoch ${lastLoss}`);
  check(s.events.some((e) => e.kind === 'switch'), 'the forced short schedule reaches the switch');
  check(report.switch_epoch && report.params_final < report.params_full, `the report shows fewer parameters: ${JSON.stringify(report)}`);
  check(await page.isVisible('#report-panel') && (await page.locator('#report tr').count()) >= 6, 'the report is on the page');
  check((await page.locator('#grid .cell').count()) === 24, 'a grid of 24 test predictions');
  const firstStep = s.events.find((e) => e.kind === 'first-step');
  const planned = s.events.find((e) => e.kind === 'start');

  // Two more runs in the same tab; pause and resume the first of them.
  const second = page.evaluate(() => window.cuttleApp.start());
  await page.waitForFunction(() => window.cuttle.running && window.cuttle.events.filter((e) => e.kind === 'progress').length > 0 && window.cuttle.events.at(-1).kind === 'progress', null, { timeout: TIMEOUT });
  await page.evaluate(() => window.cuttleApp.pause());
  await page.waitForFunction(() => window.cuttle.events.at(-1).kind === 'paused', null, { timeout: TIMEOUT });
  await second;
  check(!(await state()).done, 'a paused run is not done');
  await page.evaluate(() => window.cuttleApp.resume());
  await finished();
  await page.evaluate(() => window.cuttleApp.start());
  s = await state();
  check(!s.error, `the page reported an error: ${s.error}`);
  const [m1, m2, m3] = s.memory;
  check(s.memory.length === 3, `three runs finished: ${s.memory}`);
  check(m3 <= m2 * 1.02, `wasm memory flat across runs: ${s.memory.join(', ')} bytes`);
  check(problems.length === 0, problems.join('\n'));

  // The vision transformer preset: trains through the switch (its linear layers
  // factorized) and the loss falls. One run: memory over runs is the CNN's and GPT's check.
  await page.goto(`${url}?preset=vit-test&autostart=1`);
  await finished();
  const v = await state();
  check(!v.error, `the ViT run reported an error: ${v.error}`);
  const vEpochs = v.events.filter((e) => e.kind === 'epoch');
  const vFirst = v.events.find((e) => e.kind === 'progress');
  check(vEpochs.length === 4, `ViT: 4 epochs reported, got ${vEpochs.length}`);
  check(vFirst && vEpochs.at(-1).report.train_loss < vFirst.loss, `ViT loss goes down: ${vFirst?.loss} -> ${vEpochs.at(-1).report.train_loss}`);
  check(v.events.some((e) => e.kind === 'switch'), 'the ViT run reaches the switch');
  const vReport = v.events.find((e) => e.kind === 'report').report;
  // The reference layers are factorized where their factor pair is smaller than the
  // layer (the break-even guard keeps the rest full-rank): at least one, with fewer
  // parameters in the end, and the report lists each factorized layer's rank.
  const vRanks = Object.keys(vReport.ranks || {});
  check(vRanks.length >= 1 && vRanks.length <= 12 && vReport.params_final < vReport.params_full,
    `the ViT report lists its factorized layers and fewer parameters: ${JSON.stringify(vReport)}`);
  await page.screenshot({ path: path.join(OUT, 'vit.png'), fullPage: true });
  check(problems.length === 0, problems.join('\n'));
  const vitStepsPerS = vEpochs.map((e) => +e.steps_per_s.toFixed(2));
  const vitWall = (Date.now() - t0) / 1000;

  // A lost device mid-run is reported on the page, not a silent hang.
  const fourth = page.evaluate(() => window.cuttleApp.start());
  await page.waitForFunction(() => window.cuttle.running && window.cuttle.events.at(-1).kind === 'progress', null, { timeout: TIMEOUT });
  await page.evaluate(() => window.cuttleApp.loseDevice());
  await page.waitForFunction(() => window.cuttle.error, null, { timeout: 60000 });
  await fourth;
  const lostText = await page.textContent('#status');
  check(/lost/i.test(lostText), `the page says the device was lost: ${lostText}`);
  await page.screenshot({ path: path.join(OUT, 'device-lost.png') });
  const lostWall = (Date.now() - t0) / 1000;

  // The character GPT on the built-in text: the validation loss falls, the switch
  // happens, samples of text appear on the page (every 2 evaluations and at the end), and
  // wasm memory stays flat over three runs in one tab.
  await page.goto(`${url}?preset=gpt-test&autostart=1`);
  await finished();
  let g = await state();
  check(!g.error, `the GPT run reported an error: ${g.error}`);
  const gEpochs = g.events.filter((e) => e.kind === 'epoch');
  const gOptions = g.events.find((e) => e.kind === 'start').options;
  check(gEpochs.length === gOptions.epochs && gEpochs.length >= 2, `GPT: ${gOptions.epochs} evaluations reported, got ${gEpochs.length}`);
  const gVal = gEpochs.map((e) => e.report.test_loss);
  check(gVal.every(Number.isFinite) && gVal.at(-1) < gVal[0], `GPT validation loss goes down: ${gVal.join(', ')}`);
  check(gEpochs.every((e) => e.report.tokens_per_s > 0), 'GPT epochs report tokens/s');
  check(g.events.some((e) => e.kind === 'switch'), 'the GPT run reaches the switch');
  const gReport = g.events.find((e) => e.kind === 'report').report;
  check(gReport.switch_epoch && Number.isFinite(gReport.val_loss), `the GPT report has the switch and the validation loss: ${JSON.stringify(gReport)}`);
  const samples = g.events.filter((e) => e.kind === 'sample');
  check(samples.length >= 1 && samples.every((e) => e.text.length > 0), `GPT samples of text: ${JSON.stringify(samples)}`);
  const shown = await page.locator('#samples .sample pre').allTextContents();
  check(shown.length === samples.length && shown[0] === samples[0].text && await page.isVisible('#samples-panel'), `the samples are on the page: ${JSON.stringify(shown)}`);
  check(!(await page.isVisible('#grid-panel')), 'no image grid for a text run');
  await page.screenshot({ path: path.join(OUT, 'gpt.png'), fullPage: true });
  await page.evaluate(() => window.cuttleApp.start());
  await page.evaluate(() => window.cuttleApp.start());
  g = await state();
  check(!g.error && g.memory.length === 3, `three GPT runs finished: ${g.error} ${g.memory}`);
  check(g.memory[2] <= g.memory[1] * 1.02, `wasm memory flat across GPT runs: ${g.memory.join(', ')} bytes`);
  const gSamples = g.events.filter((e) => e.kind === 'sample');
  check(gSamples.at(-1).text === samples.at(-1).text, 'the same seed gives the same last sample in every run');
  check(problems.length === 0, problems.join('\n'));

  const stepsPerS = epochs.map((e) => e.steps_per_s);
  console.log(JSON.stringify({
    test: 'browser', ok: true, adapter: s.events.find((e) => e.kind === 'adapter'),
    steps_per_s_by_epoch: stepsPerS.map((v) => +v.toFixed(2)), batch: 50,
    load_to_run_planned_s: +(planned.t / 1000).toFixed(2),
    load_to_first_readback_s: +firstStep.since_load_s.toFixed(2), readback_after_steps: firstStep.steps,
    wasm_memory_bytes: s.memory, vit_steps_per_s_by_epoch: vitStepsPerS, vit_wasm_memory_bytes: v.memory,
    gpt_steps_per_s: gEpochs.map((e) => +e.steps_per_s.toFixed(2)),
    gpt_tokens_per_s: gEpochs.map((e) => +e.report.tokens_per_s.toFixed(0)),
    gpt_val_loss: gVal.map((x) => +x.toFixed(3)), gpt_wasm_memory_bytes: g.memory,
    gpt_first_sample: samples[0].text,
    wall_s_by_part: { cnn_vit: vitWall, device_lost: +(lostWall - vitWall).toFixed(1), gpt: +((Date.now() - t0) / 1000 - lostWall).toFixed(1) },
    wall_s: (Date.now() - t0) / 1000,
  }));
  code = 0;
} catch (e) {
  console.error(`browser test FAILED: ${e.message}`);
  for (const p of problems) console.error(p);
  code = 1;
} finally {
  fs.writeFileSync(path.join(OUT, 'console.log'), log.join('\n') + '\n');
  await ctx?.close().catch(() => {});
  server.kill();
  fs.rmSync(profile, { recursive: true, force: true });
}
process.exit(code);
