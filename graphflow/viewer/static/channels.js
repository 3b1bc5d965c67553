// The channel tree: node → component → channel, each switchable on/off, with its live rate,
// and buttons to open a window on it.
import { el, fmt } from './api.js';

export class ChannelTree {
  constructor(container, channels, handlers) {
    this.container = container;
    this.channels = channels;     // [{name, message, render, ...}]
    this.handlers = handlers;     // {toggle(name, on), open(name, renderer), isActive(name)}
    this.rows = new Map();
    this.render();
  }

  render() {
    const tree = el('div', { class: 'tree' });
    const groups = new Map();
    for (const c of this.channels) {
      const [node, comp] = c.name.split('/');
      if (!groups.has(node)) groups.set(node, new Map());
      const comps = groups.get(node);
      if (!comps.has(comp)) comps.set(comp, []);
      comps.get(comp).push(c);
    }
    for (const [node, comps] of groups) {
      const nodeEl = el('details', { open: true }, el('summary', { text: node }));
      for (const [comp, list] of comps) {
        const compEl = el('details', { open: true }, el('summary', { text: comp }));
        for (const c of list) {
          const box = el('input', { type: 'checkbox', dataset: { channel: c.name }, title: 'stream this channel' });
          box.checked = this.handlers.isActive(c.name);
          box.addEventListener('change', () => this.handlers.toggle(c.name, box.checked));
          const rate = el('span', { class: 'rate', text: '' });
          const buttons = [];
          if (c.render === 'image' || c.render === 'skeleton2') {
            buttons.push(el('button', { text: 'view', title: 'open a 2-D window', onclick: () => this.handlers.open(c.name, '2d') }));
          }
          buttons.push(el('button', { text: 'inspect', onclick: () => this.handlers.open(c.name, 'inspector') }));
          buttons.push(el('button', { text: 'plot', onclick: () => this.handlers.open(c.name, 'plot') }));
          const row = el('div', { class: 'channel', dataset: { channelRow: c.name }, title: `${c.name}\n${c.message}${c.doc ? '\n' + c.doc : ''}` },
            box, el('span', { class: 'name' }, c.name.split('/').pop(), el('span', { class: 'type', text: ` ${c.message}` })),
            rate, ...buttons);
          this.rows.set(c.name, { box, rate });
          compEl.append(row);
        }
        nodeEl.append(compEl);
      }
      tree.append(nodeEl);
    }
    this.container.replaceChildren(tree);
  }

  setActive(name, on) {
    const row = this.rows.get(name);
    if (row) row.box.checked = on;
  }

  update(stats) {
    const live = (stats.live || {}).channels || {};
    for (const [name, row] of this.rows) {
      const r = (live[name] || {}).rate;
      row.rate.textContent = r === undefined ? '' : `${fmt(r, 1)}/s`;
    }
  }
}
