// The graph: nodes (boxes of components) in layers by longest path from the sources, edges as
// curves from output row to input row, labelled with live rate and drops. A graph wider than
// its panel (a long pipeline such as OpenPose's decoder) wraps its layers into bands, read
// left to right then top to bottom; an edge to a later band runs through the gap between bands.
import { fmt } from './api.js';

const SVG = 'http://www.w3.org/2000/svg';
const NODE_W = 230, HEAD_H = 24, ROW_H = 44, GAP_X = 150, GAP_Y = 28, PAD = 24, BAND_GAP = 56;

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

export function layout(graph, maxWidth = Infinity) {
  const names = graph.nodes.map((n) => n.name);
  const succ = new Map(names.map((n) => [n, new Set()]));
  const pred = new Map(names.map((n) => [n, new Set()]));
  for (const e of graph.edges) {
    if (e.source_node === e.target_node) continue;
    succ.get(e.source_node).add(e.target_node);
    pred.get(e.target_node).add(e.source_node);
  }
  // longest path from sources; edges closing a cycle are ignored (DFS back edges)
  const layer = new Map();
  const visiting = new Set();
  const depth = (n) => {
    if (layer.has(n)) return layer.get(n);
    visiting.add(n);
    let d = 0;
    for (const p of pred.get(n)) if (!visiting.has(p)) d = Math.max(d, depth(p) + 1);
    visiting.delete(n);
    layer.set(n, d);
    return d;
  };
  names.forEach(depth);
  const layers = [];
  for (const n of names) (layers[layer.get(n)] ||= []).push(n);
  // two barycenter sweeps to reduce crossings
  const position = new Map();
  layers.forEach((l) => l.forEach((n, i) => position.set(n, i)));
  for (let sweep = 0; sweep < 2; sweep++) {
    for (const l of layers.slice(1)) {
      const bary = (n) => { const ps = [...pred.get(n)]; return ps.length ? ps.reduce((s, p) => s + position.get(p), 0) / ps.length : position.get(n); };
      l.sort((a, b) => bary(a) - bary(b));
      l.forEach((n, i) => position.set(n, i));
    }
  }
  const byName = new Map(graph.nodes.map((n) => [n.name, n]));
  const perBand = Math.max(1, Math.min(layers.length, Math.floor((maxWidth - 2 * PAD + GAP_X) / (NODE_W + GAP_X))));
  const boxes = new Map();
  const bands = [];
  let width = 0, top = PAD;
  for (let b = 0; b * perBand < layers.length; b++) {
    let bottom = top;
    layers.slice(b * perBand, (b + 1) * perBand).forEach((l, i) => {
      let y = top;
      for (const n of l || []) {
        const h = HEAD_H + ROW_H * byName.get(n).components.length + 6;
        const box = { x: PAD + i * (NODE_W + GAP_X), y, w: NODE_W, h, band: b };
        boxes.set(n, box);
        y += h + GAP_Y;
        width = Math.max(width, box.x + NODE_W + PAD);
        bottom = Math.max(bottom, y - GAP_Y);
      }
    });
    bands.push({ top, bottom });
    top = bottom + BAND_GAP;
  }
  return { boxes, bands, perBand, width, height: top - BAND_GAP + PAD };
}

export class GraphView {
  constructor(container, graph, handlers) {
    this.container = container;
    this.graph = graph;
    this.handlers = handlers;  // {component(fullName), edge(channel)}
    this.compStats = new Map();
    this.edgeLabels = new Map();
    this.lastStats = null;
    this.perBand = null;
    this.render();
    new ResizeObserver(() => {  // re-wrap when the panel's width allows more or fewer layers per band
      clearTimeout(this.timer);
      this.timer = setTimeout(() => {
        if (layout(this.graph, this.available()).perBand !== this.perBand) this.render();
      }, 100);
    }).observe(this.container);
  }

  available() {
    return this.container.clientWidth || Infinity;
  }

  render() {
    const { boxes, bands, perBand, width, height } = layout(this.graph, this.available());
    this.perBand = perBand;
    this.compStats = new Map();
    this.edgeLabels = new Map();
    const root = svg('svg', { width, height, viewBox: `0 0 ${width} ${height}`, id: 'graph-svg' });
    const defs = svg('defs');
    root.append(defs);
    defs.innerHTML =
      '<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#6c7a90"/></marker>';
    const rowY = new Map();   // component full name → y centre
    const nodeLayer = svg('g'), edgeLayer = svg('g');
    root.append(edgeLayer, nodeLayer);
    for (const node of this.graph.nodes) {
      const b = boxes.get(node.name);
      const g = svg('g', { class: 'node', 'data-node': node.name });
      g.append(svg('rect', { class: 'node-box', x: b.x, y: b.y, width: b.w, height: b.h, rx: 6 }));
      g.append(svg('text', { class: 'node-title', x: b.x + 8, y: b.y + 16 }, node.name));
      if (node.process) {  // an app split into processes (or viewed remotely): where this node runs
        g.dataset.process = node.process;
        g.append(svg('text', { class: 'node-process', x: b.x + b.w - 8, y: b.y + 16, 'text-anchor': 'end' },
          `⟨${node.process}⟩`));
      }
      node.components.forEach((c, i) => {
        const y = b.y + HEAD_H + i * ROW_H;
        rowY.set(c.full_name, { y: y + ROW_H / 2 - 2, box: b });
        const cg = svg('g', { class: 'comp', 'data-component': c.full_name });
        cg.append(svg('rect', { x: b.x + 6, y, width: b.w - 12, height: ROW_H - 4, rx: 3 }));
        cg.append(svg('text', { class: 'comp-name', x: b.x + 12, y: y + 13 }, c.name));
        const room = Math.max(6, Math.floor((b.w - 30) / 6) - c.name.length - 2);
        const type = c.type.length > room ? `…${c.type.slice(c.type.length - room + 1)}` : c.type;
        cg.append(svg('text', { class: 'comp-type', x: b.x + b.w - 12, y: y + 13, 'text-anchor': 'end' }, type));
        const stats = svg('text', { class: 'comp-stats', x: b.x + 12, y: y + 30 }, 'waiting for stats…');
        cg.append(svg('title', {}, `${c.full_name} (${c.type})\n${c.doc}`));
        cg.append(stats);
        cg.addEventListener('click', () => this.handlers.component(c.full_name));
        this.compStats.set(c.full_name, stats);
        g.append(cg);
      });
      nodeLayer.append(g);
    }
    const seen = new Map();
    for (const e of this.graph.edges) {
      const s = rowY.get(e.source.split('/').slice(0, 2).join('/'));
      const t = rowY.get(e.target.split('/').slice(0, 2).join('/'));
      if (!s || !t) continue;
      const x1 = s.box.x + s.box.w, y1 = s.y, x2 = t.box.x, y2 = t.y;
      let d, lane = null;
      if (t.box.band > s.box.band) {  // to a later band: down into the gap below this band, across, in
        lane = bands[s.box.band].bottom + BAND_GAP / 2;
        d = `M${x1},${y1} C${x1 + 40},${y1} ${x1 + 40},${lane} ${x1},${lane} L${x2},${lane} `
          + `C${x2 - 40},${lane} ${x2 - 40},${y2} ${x2},${y2}`;
      } else if (t.box.band < s.box.band) {  // back to an earlier band: round the right margin, over it, in
        const xr = width - PAD / 2, up = Math.max(6, bands[t.box.band].top - 12);
        lane = up + 28;
        d = `M${x1},${y1} L${xr},${y1} L${xr},${up} L${x2 - 16},${up} L${x2 - 16},${y2} L${x2},${y2}`;
      } else if (x2 > x1) {
        const dx = (x2 - x1) / 2;
        d = `M${x1},${y1} C${x1 + dx},${y1} ${x2 - dx},${y2} ${x2},${y2}`;
      } else {  // backward or same layer: loop below
        const low = Math.max(s.box.y + s.box.h, t.box.y + t.box.h) + 20;
        d = `M${x1},${y1} C${x1 + 80},${y1} ${x1 + 80},${low} ${(x1 + x2) / 2},${low} S${x2 - 80},${y2} ${x2},${y2}`;
      }
      const crossing = e.source_process && e.target_process && e.source_process !== e.target_process;
      const g = svg('g', { class: crossing ? 'edge crossing' : 'edge', 'data-edge': `${e.source}->${e.target}`,
        'data-channel': e.source });
      g.append(svg('path', { d, 'marker-end': 'url(#arrow)' }));
      const k = `${e.source_node}->${e.target_node}`;
      const n = seen.get(k) || 0;
      seen.set(k, n + 1);
      const lx = lane !== null ? x1 - (NODE_W + GAP_X) / 2 * (1 + n) : x2 > x1 ? x1 + (x2 - x1) * 0.5 : (x1 + x2) / 2;
      const ly = lane !== null ? lane - 16 : (x2 > x1 ? (y1 + y2) / 2 : Math.max(s.box.y + s.box.h, t.box.y + t.box.h) + 20) - 4 + n * 24;
      const port = (p) => p.split('/').pop();
      g.append(svg('text', { x: lx, y: ly, 'text-anchor': 'middle' }, `${port(e.source)} → ${port(e.target)}`));
      const rate = svg('text', { x: lx, y: ly + 11, 'text-anchor': 'middle', class: 'rate' }, '');
      const drops = svg('text', { x: lx, y: ly + 22, 'text-anchor': 'middle', class: 'drops' }, '');
      const across = crossing ? `\nacross processes: ${e.source_process} → ${e.target_process}` : '';
      g.append(rate, drops, svg('title', {}, `${e.source} → ${e.target} (${e.message})${across}`));
      g.addEventListener('click', () => this.handlers.edge(e.source));
      this.edgeLabels.set(`${e.source}->${e.target}`, { g, rate, drops, edge: e });
      edgeLayer.append(g);
    }
    this.container.replaceChildren(root);
    if (this.lastStats) this.update(this.lastStats);
  }

  update(stats) {
    this.lastStats = stats;
    const live = stats.live || {};
    for (const [name, text] of this.compStats) {
      const c = (stats.components || {})[name];
      if (!c) continue;
      const rate = ((live.components || {})[name] || {}).tick_rate;
      const t = c.tick_ms || {};
      text.textContent = `${fmt(rate ?? c.tick_rate, 1)} Hz · tick ${fmt(t.median)} / p90 ${fmt(t.p90)} ms`
        + (c.errors ? ` · ${c.errors} errors` : '');
    }
    for (const { g, rate, drops, edge } of this.edgeLabels.values()) {
      const r = ((live.channels || {})[edge.source] || {}).rate;
      const rx = ((((stats.channels || {})[edge.source] || {}).receivers) || {})[edge.target] || {};
      rate.textContent = `${fmt(r ?? 0, 1)} msg/s`;
      drops.textContent = rx.dropped ? `${rx.dropped} dropped` : '';
      g.classList.toggle('dropping', !!rx.dropped);
    }
  }
}
