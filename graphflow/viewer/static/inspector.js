// Inspector: the latest message of a channel — header, payload fields; tensors as shape, dtype,
// min/max/mean (small ones in full) with a heatmap of 2-D/3-D float tensors ([1, C, H, W] too).
import { el, fmt } from './api.js';

function valueText(v) {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'number') return fmt(v, 4);
  if (typeof v === 'string') return JSON.stringify(v);
  return JSON.stringify(v, (k, x) => (typeof x === 'number' && !Number.isInteger(x) ? Number(x.toFixed(4)) : x));
}

export class Inspector {
  constructor(body, win) {
    this.win = win;
    this.root = el('div', { class: 'inspector' }, el('span', { class: 'muted', text: 'waiting for a message…' }));
    body.append(this.root);
    this.heatmap = null;       // {path, index} the user picked
    this.heatImg = null;
    this.heatInfo = null;
    this.heatUrl = null;
  }

  message(msg) {
    const focused = document.activeElement;
    if (focused && focused.tagName === 'INPUT' && this.root.contains(focused)) {
      // the user is typing (a heatmap channel): show this message once they are done
      if (!this.pending) focused.addEventListener('blur', () => { const p = this.pending; this.pending = null; if (p) this.message(p); }, { once: true });
      this.pending = msg;
      return;
    }
    const m = msg.message;
    const h = m.header;
    const rows = [
      ['channel', msg.channel], ['type', m.type], ['uuid', h.uuid], ['acqtime', fmt(h.acqtime, 6)],
      ['pubtime', fmt(h.pubtime, 6)], ['latency', `${fmt(h.latency_ms, 3)} ms (pubtime − acqtime)`],
      ['age', h.age_ms === undefined ? '–' : `${fmt(h.age_ms, 1)} ms`],
    ];
    const header = el('table', { class: 'header' }, ...rows.map(([k, v]) =>
      el('tr', {}, el('td', { class: 'key', text: k }), el('td', { class: `hv-${k}`, text: v }))));
    const payload = el('table', { class: 'payload' },
      ...Object.entries(m.payload).map(([k, v]) => this.field(k, v)));
    this.root.replaceChildren(el('div', { class: 'muted', text: 'header' }), header,
      el('div', { class: 'muted', text: 'payload' }), payload);
    const el_ = this.win.el;
    el_.dataset.updates = String(Number(el_.dataset.updates || 0) + 1);
    el_.dataset.uuid = h.uuid;
  }

  field(name, v) {
    return el('tr', { dataset: { field: v.path } }, el('td', { class: 'key', text: name }), el('td', {}, this.value(v)));
  }

  value(v) {
    if (v.kind === 'scalar') return el('span', { text: valueText(v.value) });
    if (v.kind === 'tensor') {
      const parts = [el('span', { class: 'tensor-shape', text: `shape [${v.shape.join(', ')}]` }), ` ${v.dtype}`];
      if (v.min !== undefined) parts.push(` · min ${fmt(v.min)} · max ${fmt(v.max)} · mean ${fmt(v.mean)}`);
      const box = el('div', { class: 'tensor', dataset: { path: v.path } }, ...parts);
      if (v.values !== undefined) box.append(el('div', { class: 'values', text: valueText(v.values) }));
      if (v.heatmap) box.append(this.heatmapControls(v));
      return box;
    }
    if (v.kind === 'message') {
      return el('table', {}, el('caption', { class: 'muted', text: v.type }),
        ...Object.entries(v.fields).map(([k, x]) => this.field(k, x)));
    }
    if (v.kind === 'list') {
      if (v.values !== undefined) return el('span', { text: `[${v.length}] ${valueText(v.values)}` });
      return el('table', {}, el('caption', { class: 'muted', text: `list of ${v.length}` }),
        ...v.items.map((x, i) => this.field(String(i), x)));
    }
    if (v.kind === 'dict') {
      return el('table', {}, ...Object.entries(v.items).map(([k, x]) => this.field(k, x)));
    }
    return el('span', { text: JSON.stringify(v) });
  }

  heatmapControls(v) {
    let shape = v.shape;
    while (shape.length > 3 && shape[0] === 1) shape = shape.slice(1);  // a batch of one: [1, C, H, W]
    const channels = shape.length === 3 ? shape[0] : 1;
    const on = this.heatmap && this.heatmap.path === v.path;
    const toggle = el('button', { class: 'heatmap-toggle', text: on ? 'hide heatmap' : 'heatmap' });
    const index = el('input', { type: 'number', class: 'heatmap-index', min: 0, max: channels - 1,
                                value: on ? this.heatmap.index : 0, title: 'channel (axis 0)' });
    index.disabled = channels === 1;
    const wrap = el('div', { class: 'heatmap' }, toggle, ' channel ', index, ` of ${channels}`);
    toggle.addEventListener('click', () => {
      this.heatmap = on ? null : { path: v.path, index: Number(index.value) || 0 };
      this.win.changed();
      toggle.textContent = this.heatmap ? 'hide heatmap' : 'heatmap';
    });
    index.addEventListener('change', () => {
      const i = Math.max(0, Math.min(channels - 1, Number(index.value) || 0));
      index.value = i;
      this.heatmap = { path: v.path, index: i };
      this.win.changed();
    });
    if (on) {
      if (!this.heatImg) this.heatImg = el('img', { class: 'heatmap-image', alt: 'heatmap' });
      wrap.append(this.heatImg);
      if (this.heatInfo) wrap.append(el('div', { class: 'muted heatmap-range', text: this.heatInfo }));
    }
    return wrap;
  }

  heatmapReceived(header, blob) {
    if (!this.heatmap || header.path !== this.heatmap.path) return;
    if (this.heatUrl) URL.revokeObjectURL(this.heatUrl);
    this.heatUrl = URL.createObjectURL(blob);
    if (!this.heatImg) this.heatImg = el('img', { class: 'heatmap-image', alt: 'heatmap' });
    this.heatImg.src = this.heatUrl;
    this.heatInfo = `channel ${header.index} of ${header.channels}: ${fmt(header.min)} (dark) … ${fmt(header.max)} (yellow)`;
    const range = this.root.querySelector('.heatmap-range');
    if (range) range.textContent = this.heatInfo;
    this.win.el.dataset.heatmaps = String(Number(this.win.el.dataset.heatmaps || 0) + 1);
  }

  subscription() {
    return this.heatmap ? { heatmap: this.heatmap } : {};
  }
}
