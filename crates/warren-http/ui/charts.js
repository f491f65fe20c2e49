// Live line charts (uPlot) fed by the pages' polls, each with a text alternative: the
// current values are always printed under the chart and in its aria-label.

import { h, num, fmtRate } from './dom.js';

const MAX_POINTS = 360;
const COLORS = ['#1f6fd1', '#d1621f', '#2b9a3f', '#9b2bb3', '#c9a400', '#12959b', '#c0392b', '#555'];

export function lineChart(parent, { title, testid, series, kind = 'count', height = 170 }) {
  const fmt = kind === 'rate' ? fmtRate : num;
  const plotBox = h('div', { class: 'plot', role: 'img', 'aria-label': `${title}: no data yet` });
  const values = h('dl', { class: 'chart-values' });
  const cells = series.map((s, i) => {
    const dd = h('dd', { 'data-testid': `${testid}-${s.key}` }, '–');
    const swatch = h('span', { class: 'swatch', 'aria-hidden': 'true' });
    // Through the CSSOM, not a style attribute, so a strict Content-Security-Policy allows it.
    swatch.style.background = COLORS[i % COLORS.length];
    values.append(h('div', {}, h('dt', {}, swatch, s.label), dd));
    return dd;
  });
  const fig = h('figure', { class: 'chart', 'data-testid': testid }, h('figcaption', {}, title), plotBox, values);
  parent.append(fig);

  const data = [[], ...series.map(() => [])];
  let plot = null;
  let ro = null;
  const width = () => Math.max(200, plotBox.clientWidth || parent.clientWidth || 400);
  if (window.uPlot) {
    plot = new window.uPlot({
      width: width(),
      height,
      legend: { show: false },
      cursor: { drag: { x: false, y: false } },
      scales: {
        // At least the last minute, so one or two samples do not stretch the axis over years.
        // (uPlot widens a single point by itself, so the span comes from the data.)
        x: {
          time: true,
          range: (u) => {
            const xs = u.data[0];
            const last = xs.length ? xs[xs.length - 1] : Date.now() / 1000;
            return [Math.min(xs.length ? xs[0] : last, last - 60), last];
          },
        },
        y: { range: (u, min, max) => [0, max > 0 ? max * 1.15 : 1] },
      },
      axes: [
        { stroke: '#555', grid: { stroke: '#eee' } },
        { stroke: '#555', grid: { stroke: '#eee' }, size: 56, values: (u, ticks) => ticks.map((v) => (kind === 'rate' ? `${+v.toFixed(2)}/s` : num(v))) },
      ],
      series: [{}, ...series.map((s, i) => ({ label: s.label, stroke: COLORS[i % COLORS.length], width: 2, points: { show: false } }))],
    }, data, plotBox);
    // The chart has a fixed pixel width: follow the box when the window or layout changes.
    ro = new ResizeObserver(() => {
      const w = width();
      if (plot && Math.abs(plot.width - w) > 2) plot.setSize({ width: w, height });
    });
    ro.observe(plotBox);
  } else {
    plotBox.append(h('p', { class: 'muted' }, 'Chart library not loaded; current values below.'));
  }

  return {
    push(vals) {
      data[0].push(Date.now() / 1000);
      vals.forEach((v, i) => data[i + 1].push(Number(v) || 0));
      if (data[0].length > MAX_POINTS) data.forEach((a) => a.shift());
      if (plot) plot.setData(data);
      const parts = series.map((s, i) => `${s.label} ${fmt(vals[i])}`);
      vals.forEach((v, i) => { cells[i].textContent = fmt(v); });
      plotBox.setAttribute('aria-label', `${title}, now: ${parts.join(', ')}`);
    },
    destroy() {
      if (ro) ro.disconnect();
      if (plot) plot.destroy();
      plot = null;
    },
  };
}
