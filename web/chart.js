// The demo page's line charts: a canvas each, drawn whole on every update. Small on
// purpose (no dependency), but readable: the legend sits above the plot (never over the
// data) and carries each series' latest value; every point has a marker (a run's first
// epoch is a single point), the switch to low rank is a labelled dashed line, the y axis
// has round ticks clamped to what the quantity can be (accuracy 0-100%, loss >= 0), and
// the canvas is drawn at the screen's pixel density.

const COLORS = ['#d62728', '#1f77b4', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf', '#bcbd22', '#7f7f7f'];
const GHOST = '#9a9a9a';
// More series than this and the legend names the first ones and counts the rest.
const LEGEND_MAX = 9;

// A round step (1, 2 or 5 times a power of ten) near `span / count`.
export function niceStep(span, count) {
  const raw = span / Math.max(1, count);
  const p = 10 ** Math.floor(Math.log10(raw));
  const m = raw / p;
  return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

// The y axis for values in [lo, hi]: round bounds and ticks, inside [yMin, yMax].
export function yAxis(lo, hi, yMin = null, yMax = null) {
  if (!(hi > lo)) {
    const d = Math.abs(lo) * 0.1 || 1;
    [lo, hi] = [lo - d, hi + d];
  }
  const pad = (hi - lo) * 0.06;
  [lo, hi] = [lo - pad, hi + pad];
  if (yMin !== null) lo = Math.max(lo, yMin);
  if (yMax !== null) hi = Math.min(hi, yMax);
  const step = niceStep(hi - lo, 4);
  lo = Math.floor(lo / step + 1e-9) * step;
  hi = Math.ceil(hi / step - 1e-9) * step;
  if (yMin !== null) lo = Math.max(lo, yMin);
  if (yMax !== null) hi = Math.min(hi, yMax);
  const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  const ticks = [];
  for (let k = Math.ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9; k++) ticks.push(+(k * step).toFixed(decimals));
  return { lo, hi, ticks, decimals };
}

// series: [{ name, points: [[x, y]], dense (many points: a marker on the last only),
// ghost (the previous run, grey and dashed) }]. opts: xLabel, xMax (the axis reaches at
// least this), yMin / yMax (clamps), unit (after tick labels), format (the legend's
// latest value), mark (x of the switch) and markLabel, empty (text while there is no data).
export function drawChart(canvas, series, opts = {}) {
  const { xLabel = 'epoch', xMax = 1, yMin = null, yMax = null, unit = '', format = (v) => v.toFixed(2), mark = null, markLabel = 'switch', empty = '' } = opts;
  const dpr = window.devicePixelRatio || 1;
  const W = canvas.clientWidth || canvas.width;
  const H = canvas.clientHeight || canvas.height;
  if (canvas.width !== Math.round(W * dpr) || canvas.height !== Math.round(H * dpr)) {
    canvas.width = Math.round(W * dpr);
    canvas.height = Math.round(H * dpr);
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, W, H);
  ctx.font = '11px system-ui, sans-serif';
  ctx.textBaseline = 'middle';
  const shown = series.filter((s) => s.points.length);

  // The legend: swatch, name, latest value; wrapped into rows above the plot.
  const colored = series.filter((s) => !s.ghost);
  const color = (s) => (s.ghost ? GHOST : COLORS[colored.indexOf(s) % COLORS.length]);
  const items = shown.slice(0, LEGEND_MAX).map((s) => ({ s, text: `${s.name} ${format(s.points.at(-1)[1])}` }));
  if (shown.length > LEGEND_MAX) items.push({ s: null, text: `+${shown.length - LEGEND_MAX} more` });
  let [lx, ly] = [6, 8];
  for (const it of items) {
    const w = 16 + ctx.measureText(it.text).width + 12;
    if (lx + w > W - 4 && lx > 6) [lx, ly] = [6, ly + 15];
    [it.x, it.y] = [lx, ly];
    lx += w;
  }
  const legendH = items.length ? ly + 9 : 0;
  const [L, R, T, B] = [46, 12, legendH + 8, 32];
  const [pw, ph] = [W - L - R, H - T - B];
  if (pw < 40 || ph < 30) return;
  for (const it of items) {
    if (it.s) {
      ctx.fillStyle = color(it.s);
      ctx.fillRect(it.x, it.y - 4, 10, 8);
    }
    ctx.fillStyle = '#333';
    ctx.fillText(it.text, it.x + (it.s ? 14 : 0), it.y);
  }

  ctx.strokeStyle = '#bbb';
  ctx.strokeRect(L, T, pw, ph);
  if (!shown.length) {
    ctx.fillStyle = '#888';
    ctx.textAlign = 'center';
    ctx.fillText(empty, L + pw / 2, T + ph / 2);
    ctx.textAlign = 'left';
    return;
  }
  const pts = shown.flatMap((s) => s.points).filter(([, y]) => Number.isFinite(y));
  const x1 = Math.max(xMax, ...pts.map((p) => p[0]));
  const ys = pts.map((p) => p[1]);
  const y = yAxis(Math.min(...ys), Math.max(...ys), yMin, yMax);
  const X = (v) => L + (v / x1) * pw;
  const Y = (v) => T + (1 - (Math.min(Math.max(v, y.lo), y.hi) - y.lo) / (y.hi - y.lo)) * ph;

  // Grid and tick labels.
  ctx.fillStyle = '#555';
  ctx.textAlign = 'right';
  for (const t of y.ticks) {
    ctx.strokeStyle = '#eee';
    ctx.beginPath(); ctx.moveTo(L + 1, Y(t)); ctx.lineTo(L + pw - 1, Y(t)); ctx.stroke();
    ctx.fillText(`${t.toFixed(y.decimals)}${unit}`, L - 4, Y(t));
  }
  ctx.textAlign = 'center';
  const xs = niceStep(x1, Math.min(10, Math.max(2, Math.floor(pw / 50))));
  const xStep = Math.max(1, xs);
  for (let v = 0; v <= x1 + 1e-9; v += xStep) ctx.fillText(String(+v.toFixed(3)), X(v), T + ph + 10);
  ctx.fillText(xLabel, L + pw / 2, H - 7);
  ctx.textAlign = 'left';

  // The switch: a labelled dashed line.
  if (mark !== null) {
    ctx.setLineDash([4, 3]);
    ctx.strokeStyle = '#000';
    ctx.beginPath(); ctx.moveTo(X(mark), T); ctx.lineTo(X(mark), T + ph); ctx.stroke();
    ctx.setLineDash([]);
    const w = ctx.measureText(markLabel).width + 6;
    const left = X(mark) + w + 2 > L + pw ? X(mark) - w - 2 : X(mark) + 2;
    ctx.fillStyle = 'rgba(255,255,255,0.85)';
    ctx.fillRect(left, T + 2, w, 14);
    ctx.fillStyle = '#000';
    ctx.fillText(markLabel, left + 3, T + 9);
  }

  // The series: the previous run's first (under), then this run's.
  for (const s of [...shown.filter((s) => s.ghost), ...shown.filter((s) => !s.ghost)]) {
    const c = color(s);
    ctx.strokeStyle = ctx.fillStyle = c;
    ctx.lineWidth = s.ghost ? 1.5 : 2;
    ctx.setLineDash(s.ghost ? [5, 3] : []);
    ctx.beginPath();
    s.points.forEach(([px, py], j) => (j ? ctx.lineTo(X(px), Y(py)) : ctx.moveTo(X(px), Y(py))));
    ctx.stroke();
    ctx.setLineDash([]);
    const marked = s.dense ? [s.points.at(-1)] : s.points;
    for (const [px, py] of marked) {
      ctx.beginPath();
      ctx.arc(X(px), Y(py), s.ghost ? 2.5 : 3.5, 0, 2 * Math.PI);
      ctx.fill();
    }
  }
  ctx.lineWidth = 1;
}
