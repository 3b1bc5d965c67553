// Boot: fetch the graph, channels and params, open the app's predefined windows, connect the stream.
import { api, showError } from './api.js';
import { Stream } from './stream.js';
import { GraphView } from './graph.js';
import { ChannelTree } from './channels.js';
import { WindowManager } from './windows.js';
import { ParamsPanel } from './params.js';

function setupTabs() {
  for (const button of document.querySelectorAll('.tabs button')) {
    button.addEventListener('click', () => {
      for (const b of document.querySelectorAll('.tabs button')) b.classList.toggle('active', b === button);
      for (const panel of document.querySelectorAll('.tab-panel')) panel.hidden = panel.id !== `${button.dataset.tab}-panel`;
    });
  }
}

function runState(stats) {
  const badge = document.getElementById('run-state');
  const state = stats.failure ? 'failed' : stats.finished ? 'finished' : 'running';
  badge.className = `badge ${state}`;
  badge.textContent = stats.finished && !stats.failure ? 'graph finished — showing the last messages' : state;
  if (stats.failure && !runState.reported) {
    runState.reported = true;
    showError(`the graph failed: ${stats.failure}`);
  }
}

function processStates(stats) {
  // An app split into processes, or viewed from another machine: one badge per process
  const box = document.getElementById('processes');
  const processes = stats.processes || {};
  box.replaceChildren(...Object.entries(processes).map(([name, p]) => {
    const state = p.failure ? 'failed' : p.finished ? 'finished' : p.connected ? 'running' : 'failed';
    const badge = document.createElement('span');
    badge.className = `badge ${state}`;
    badge.dataset.process = name;
    badge.textContent = `${name}${p.pid ? ` · pid ${p.pid}` : ''}${p.connected || p.finished ? '' : ' · not connected'}`;
    badge.title = `${p.endpoint}${p.host ? ` on ${p.host}` : ''}\nnodes: ${(p.nodes || []).join(', ')}`
      + `\nrunning ${(p.elapsed_s ?? 0).toFixed(1)} s` + (p.failure ? `\nfailed: ${p.failure}` : '');
    return badge;
  }));
}

async function boot() {
  setupTabs();
  const [graph, channels, config] = await Promise.all([api.get('/api/graph'), api.get('/api/channels'), api.get('/api/config')]);
  document.getElementById('app-name').textContent = graph.name;
  document.title = `${graph.name} — graphflow viewer`;
  const channelInfo = new Map(channels.map((c) => [c.name, c]));
  const conn = document.getElementById('conn-state');
  let windows = null;
  const stream = new Stream({
    open: () => { conn.textContent = 'live'; conn.className = 'badge running'; },
    close: () => { conn.textContent = 'reconnecting'; conn.className = 'badge failed'; },
    json: (msg) => {
      if (msg.type === 'stats') {
        runState(msg);
        processStates(msg);
        graphView.update(msg);
        tree.update(msg);
        windows.stats(msg);
      } else if (msg.type === 'error') {
        showError(msg.error);
      } else if (msg.type === 'hello') {
        document.getElementById('client-info').textContent = `client ${msg.client}`;
      } else {
        windows.json(msg);
      }
    },
    binary: (header, blob) => windows.frame(header, blob),
  });
  windows = new WindowManager(document.getElementById('windows'), stream, channelInfo);
  const tree = new ChannelTree(document.getElementById('channels-panel'), channels, {
    toggle: (name, on) => windows.setActive(name, on),
    open: (name, renderer) => windows.open(`${name.split('/').slice(1).join('/')} ${renderer}`, renderer, [name]),
    isActive: (name) => windows.isActive(name),
  });
  windows.listeners.push((name, on) => tree.setActive(name, on));
  const graphView = new GraphView(document.getElementById('graph'), graph, {
    component: (full) => windows.open(`${full} ticks`, 'plot', [], [full]),
    edge: (channel) => windows.open(`${channel.split('/').slice(1).join('/')} plot`, 'plot', [channel]),
  });
  new ParamsPanel(document.getElementById('params-panel'), config);
  for (const [name, spec] of Object.entries((graph.ui_config || {}).windows || {})) {
    const names = spec.channels.map((c) => c.name);
    for (const c of spec.channels) if (c.active !== false) windows.active.add(c.name);
    windows.open(name, spec.renderer || '2d', names, [], false);
  }
  window.graphflowViewer = { graph, windows, stream };  // for debugging (and tests)
  stream.connect();
}

boot().catch((error) => showError(`viewer failed to start: ${error.message}`));
