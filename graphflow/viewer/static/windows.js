// Windows: 2-D views, plots and inspectors, each showing some channels. The subscription sent
// to the server lists, per window, only the channels switched on.
import { el } from './api.js';
import { View2D } from './view2d.js';
import { Plot } from './plot.js';
import { Inspector } from './inspector.js';

const RENDERERS = { '2d': View2D, plot: Plot, inspector: Inspector };
let counter = 0;

class Window {
  constructor(manager, name, renderer, channels, components = []) {
    this.manager = manager;
    this.id = `w${++counter}`;
    this.name = name;
    this.renderer = renderer;
    this.channels = channels;
    this.components = components;
    const close = el('button', { class: 'close', text: '×', title: 'close', onclick: () => manager.close(this) });
    this.status = el('span', { class: 'muted win-status' });
    this.channelBar = el('div', { class: 'win-channels' });
    this.body = el('div', { class: 'win-body' });
    this.el = el('div', { class: 'window', dataset: { window: name, renderer, id: this.id } },
      el('header', {}, el('span', { class: 'title', text: name }), el('span', { class: 'muted', text: renderer }),
        this.status, el('span', { class: 'spacer' }), close),
      this.channelBar, this.body);
    this.view = new RENDERERS[renderer](this.body, this);
    this.renderChannels();
  }

  renderChannels() {
    this.channelBar.replaceChildren(...this.channels.map((name) => {
      const box = el('input', { type: 'checkbox', dataset: { channel: name } });
      box.checked = this.manager.isActive(name);
      box.addEventListener('change', () => this.manager.setActive(name, box.checked));
      return el('label', { title: name }, box, ' ', name);
    }), ...this.components.map((c) => el('span', { class: 'muted', text: `component ${c}` })));
    const off = this.channels.filter((n) => !this.manager.isActive(n));
    this.status.textContent = off.length && off.length === this.channels.length ? '(off)' : '';
  }

  activeChannels() {
    return this.channels.filter((n) => this.manager.isActive(n));
  }

  subscription() {
    return { id: this.id, renderer: this.renderer, channels: this.activeChannels(), ...this.view.subscription() };
  }

  resized() { this.manager.changed(); }
  changed() { this.manager.changed(); }
}

export class WindowManager {
  constructor(container, stream, channelInfo) {
    this.container = container;
    this.stream = stream;
    this.channelInfo = channelInfo;   // name → channel description
    this.windows = new Map();
    this.active = new Set();
    this.listeners = [];
    this.timer = null;
  }

  isActive(name) { return this.active.has(name); }

  setActive(name, on) {
    if (on) this.active.add(name); else this.active.delete(name);
    if (on && ![...this.windows.values()].some((w) => w.channels.includes(name))) {
      const render = (this.channelInfo.get(name) || {}).render;
      this.open(name, render === 'image' || render === 'skeleton2' ? '2d' : 'inspector', [name]);
    }
    for (const w of this.windows.values()) w.renderChannels();
    for (const listener of this.listeners) listener(name, on);
    this.changed();
  }

  open(name, renderer, channels, components = [], activate = true) {
    const existing = [...this.windows.values()].find((w) => w.name === name && w.renderer === renderer);
    if (existing) { existing.el.scrollIntoView({ block: 'nearest' }); return existing; }
    if (activate) for (const c of channels) this.active.add(c);
    const win = new Window(this, name, renderer, channels, components);
    this.windows.set(win.id, win);
    this.container.append(win.el);
    for (const c of channels) for (const listener of this.listeners) listener(c, this.active.has(c));
    this.changed();
    return win;
  }

  close(win) {
    this.windows.delete(win.id);
    win.el.remove();
    this.changed();
  }

  changed() {  // debounce: resizes and toggles come in bursts
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.stream.subscribe([...this.windows.values()].map((w) => w.subscription())), 50);
  }

  frame(header, blob) {
    const win = this.windows.get(header.window);
    if (!win) return;
    if (header.type === 'frame' && win.view.frameReceived) win.view.frameReceived(header, blob);
    if (header.type === 'heatmap' && win.view.heatmapReceived) win.view.heatmapReceived(header, blob);
  }

  json(msg) {
    const win = this.windows.get(msg.window);
    if (!win) return;
    if (msg.type === 'inspect' && win.view.message) win.view.message(msg);
    if (msg.type === 'samples' && win.view.samples) win.view.samples(msg);
  }

  stats(stats) {
    for (const win of this.windows.values()) if (win.view.stats) win.view.stats(stats);
  }
}
