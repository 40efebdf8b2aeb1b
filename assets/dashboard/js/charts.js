// Charts (uPlot, vendored) and the confusion-matrix heat map. Every chart marks its
// container with the number of points it drew (`data-points`), and the first chart of a
// page load sets the `first-chart` performance mark.

const PALETTE = ['#1f77b4', '#ff7f0e', '#9467bd', '#d62728', '#8c564b', '#e377c2', '#17becf', '#bcbd22', '#7f7f7f', '#2ca02c', '#aec7e8', '#ffbb78'];
const live = new Set();

/// A stable colour per class: `normal` is green, `unknown` grey, others from the palette.
export function classColour(classes, label) {
  if (label === 'normal') return '#2ca02c';
  if (label === 'unknown') return '#999999';
  const i = classes.indexOf(label);
  return PALETTE[(i < 0 ? 0 : i) % (PALETTE.length - 3)];
}

export function withAlpha(hex, alpha) {
  const n = parseInt(hex.slice(1), 16);
  return `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${alpha})`;
}

/// Records how many finite values a chart drew (a wrong field name draws nothing).
function drawn(el, values) {
  const points = values.reduce((n, series) => n + series.filter((v) => Number.isFinite(v)).length, 0);
  el.dataset.points = String(points);
  if (performance.getEntriesByName('first-chart').length === 0 && points > 0) performance.mark('first-chart');
}

/// A line (or bar) chart of `series` ({label, values, colour, scale, bars, points}) over `x`.
export function lineChart(el, { x, series, xLabel = '', yLabel = '', height = 220, hooks = {}, scales = {}, axes = [], onClick }) {
  for (const u of live) if (u.root.parentNode === el) { u.destroy(); live.delete(u); }
  el.replaceChildren();
  const opts = {
    width: Math.max(280, el.clientWidth || 640),
    height,
    scales: { x: { time: false }, ...scales },
    axes: [{ label: xLabel }, { label: yLabel }, ...axes],
    series: [{ label: xLabel }, ...series.map((s) => ({
      label: s.label,
      stroke: s.colour,
      fill: s.fill,
      width: s.bars ? 0 : 1.5,
      scale: s.scale || 'y',
      points: { show: !!s.points },
      paths: s.bars ? uPlot.paths.bars({ size: [0.5, 48] }) : undefined,
    }))],
    hooks,
  };
  const u = new uPlot(opts, [x, ...series.map((s) => s.values)], el);
  live.add(u);
  if (onClick) {
    u.over.addEventListener('click', () => {
      const value = u.posToVal(u.cursor.left, 'x');
      if (Number.isFinite(value)) onClick(value);
    });
  }
  drawn(el, series.map((s) => s.values));
  return u;
}

/// Vertical lines at `marks` ({x, label, colour}) over a chart, drawn after its series.
export function markLines(marks) {
  return (u) => {
    const { ctx, bbox } = u;
    ctx.save();
    ctx.font = `${11 * devicePixelRatio}px sans-serif`;
    for (const m of marks) {
      const px = u.valToPos(m.x, 'x', true);
      if (px < bbox.left || px > bbox.left + bbox.width) continue;
      ctx.strokeStyle = m.colour;
      ctx.setLineDash([4 * devicePixelRatio, 3 * devicePixelRatio]);
      ctx.beginPath();
      ctx.moveTo(px, bbox.top);
      ctx.lineTo(px, bbox.top + bbox.height);
      ctx.stroke();
      ctx.fillStyle = m.colour;
      ctx.fillText(m.label, px + 3, bbox.top + 12 * devicePixelRatio);
    }
    ctx.restore();
  };
}

/// Coloured backgrounds for spans ({from, to, colour}) of a chart's x axis, drawn under its series.
export function spanFill(spans) {
  return (u) => {
    const { ctx, bbox } = u;
    ctx.save();
    for (const s of spans) {
      const a = Math.max(bbox.left, u.valToPos(s.from, 'x', true));
      const b = Math.min(bbox.left + bbox.width, u.valToPos(s.to, 'x', true));
      if (b <= a) continue;
      ctx.fillStyle = s.colour;
      ctx.fillRect(a, bbox.top, Math.max(1, b - a), bbox.height);
    }
    ctx.restore();
  };
}

window.addEventListener('resize', () => {
  for (const u of live) {
    if (!u.root.isConnected) { live.delete(u); continue; }
    const width = u.root.parentNode.clientWidth;
    if (width && Math.abs(width - u.width) > 4) u.setSize({ width: Math.max(280, width), height: u.height });
  }
});

/// The confusion matrix as a table whose cells are shaded by their share of the row.
export function confusionTable(el, classes, matrix) {
  const table = document.createElement('table');
  table.className = 'confusion';
  const caption = table.createCaption();
  caption.textContent = 'Confusion matrix (rows: true class, columns: predicted)';
  const head = table.createTHead().insertRow();
  head.appendChild(document.createElement('th'));
  for (const c of classes) {
    const th = document.createElement('th');
    th.scope = 'col';
    th.textContent = c;
    head.appendChild(th);
  }
  const body = table.createTBody();
  matrix.forEach((row, r) => {
    const tr = body.insertRow();
    const th = document.createElement('th');
    th.scope = 'row';
    th.textContent = classes[r];
    tr.appendChild(th);
    const total = row.reduce((a, b) => a + b, 0) || 1;
    row.forEach((count, c) => {
      const td = tr.insertCell();
      td.textContent = String(count);
      td.dataset.cell = `${r},${c}`;
      const share = count / total;
      td.style.background = r === c ? withAlpha('#2ca02c', 0.15 + 0.85 * share) : (count ? withAlpha('#d62728', 0.2 + 0.8 * share) : '');
      if (share > 0.6) td.style.color = '#fff';
    });
  });
  el.replaceChildren(table);
  drawn(el, matrix);
}
