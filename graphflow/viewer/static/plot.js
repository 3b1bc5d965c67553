// Plots: scalar fields of messages over acqtime, plus channel rates and component tick
// durations from the live stats. A legend switches series on and off.
import { el, fmt } from './api.js';

const COLORS = ['#4fa3ff', '#ff8c4f', '#52d273', '#ff5c8a', '#c88cff', '#ffd84f', '#4fe3d8', '#a0a0a0'];
const SPAN = 60;  // seconds shown

export class Plot {
  constructor(body, win) {
    this.win = win;
    this.series = new Map();   // key → {label, points: [[t, v]], visible, color}
    this.canvas = el('canvas');
    this.legend = el('div', { class: 'legend' });
    body.append(this.canvas, this.legend);
    new ResizeObserver(() => this.draw()).observe(this.canvas);
  }

  add(key, label, t, v, visible = true) {
    let s = this.series.get(key);
    if (!s) {
      s = { label, points: [], visible, color: COLORS[this.series.size % COLORS.length] };
      this.series.set(key, s);
      this.renderLegend();
    }
    if (s.points.length && t < s.points[s.points.length - 1][0]) return;
    s.points.push([t, v]);
    const cut = t - SPAN * 2;
    while (s.points.length > 2000 || (s.points.length && s.points[0][0] < cut)) s.points.shift();
  }

  samples(msg) {
    for (const [t, values] of msg.points) {
      for (const [field, v] of Object.entries(values)) {
        this.add(`${msg.channel}:${field}`, `${msg.channel.split('/').pop()}.${field}`, t, v, !field.endsWith('#len') || Object.keys(values).length === 1);
      }
    }
    this.bump();
  }

  stats(stats) {
    const t = stats.now;
    if (t === undefined) return;
    const live = stats.live || {};
    for (const name of this.win.activeChannels()) {
      const r = ((live.channels || {})[name] || {}).rate;
      if (r !== undefined) this.add(`rate:${name}`, `${name.split('/').pop()} rate /s`, t, r, this.win.components.length > 0 || this.win.channels.length > 0);
    }
    for (const comp of this.win.components) {
      const c = (stats.components || {})[comp];
      if (!c) continue;
      this.add(`tick50:${comp}`, `${comp} tick median ms`, t, c.tick_ms.median ?? 0);
      this.add(`tick90:${comp}`, `${comp} tick p90 ms`, t, c.tick_ms.p90 ?? 0);
      const rate = ((live.components || {})[comp] || {}).tick_rate;
      if (rate !== undefined) this.add(`tickrate:${comp}`, `${comp} ticks /s`, t, rate, false);
    }
    this.bump();
  }

  bump() {
    this.win.el.dataset.updates = String(Number(this.win.el.dataset.updates || 0) + 1);
    this.draw();
  }

  renderLegend() {
    this.legend.replaceChildren(...[...this.series.entries()].map(([key, s]) => {
      const box = el('input', { type: 'checkbox', dataset: { series: key } });
      box.checked = s.visible;
      box.addEventListener('change', () => { s.visible = box.checked; this.draw(); });
      return el('label', {}, box, el('span', { class: 'swatch', style: `background:${s.color}` }), s.label);
    }));
  }

  draw() {
    const c = this.canvas;
    const ratio = window.devicePixelRatio || 1;
    c.width = Math.max(16, c.clientWidth * ratio);
    c.height = Math.max(16, c.clientHeight * ratio);
    const ctx = c.getContext('2d');
    ctx.fillStyle = '#0d0f12';
    ctx.fillRect(0, 0, c.width, c.height);
    const visible = [...this.series.values()].filter((s) => s.visible && s.points.length);
    if (!visible.length) return;
    const tMax = Math.max(...visible.map((s) => s.points[s.points.length - 1][0]));
    const tMin = tMax - SPAN;
    let lo = Infinity, hi = -Infinity;
    for (const s of visible) for (const [t, v] of s.points) if (t >= tMin) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    if (!Number.isFinite(lo)) return;
    if (hi - lo < 1e-9) { hi += 1; lo -= 1; }
    const pad = (hi - lo) * 0.08; hi += pad; lo -= pad;
    const L = 48 * ratio, R = 8 * ratio, T = 8 * ratio, B = 18 * ratio;
    const X = (t) => L + ((t - tMin) / SPAN) * (c.width - L - R);
    const Y = (v) => T + (1 - (v - lo) / (hi - lo)) * (c.height - T - B);
    ctx.strokeStyle = '#2d333d';
    ctx.fillStyle = '#8a93a3';
    ctx.font = `${10 * ratio}px sans-serif`;
    ctx.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const v = lo + ((hi - lo) * i) / 4;
      ctx.beginPath(); ctx.moveTo(L, Y(v)); ctx.lineTo(c.width - R, Y(v)); ctx.stroke();
      ctx.fillText(fmt(v, 2), 2, Y(v) + 3 * ratio);
    }
    ctx.fillText(`last ${SPAN} s`, L, c.height - 4 * ratio);
    for (const s of visible) {
      ctx.strokeStyle = s.color;
      ctx.lineWidth = 1.5 * ratio;
      ctx.beginPath();
      let started = false;
      for (const [t, v] of s.points) {
        if (t < tMin) continue;
        if (!started) { ctx.moveTo(X(t), Y(v)); started = true; } else ctx.lineTo(X(t), Y(v));
      }
      ctx.stroke();
    }
  }

  subscription() {
    return {};
  }
}
