// The timeline of `graphflow view FILE.mcap`: play, pause, step one message, seek, rate.
// Shown only when the viewer serves a recording (/api/recording answers); a live app has none.
import { api, el, showError } from './api.js';

const STYLE = `
#timeline { position: fixed; left: 0; right: 0; bottom: 0; display: flex; gap: .5em; align-items: center;
  padding: .4em .8em; background: #16191e; border-top: 1px solid #2a2f37; z-index: 50; font-size: 13px; }
#timeline button { min-width: 2.4em; }
#timeline input[type=range] { flex: 1; }
#timeline .tl-damaged { color: #e0a030; }
#timeline .tl-time { font-variant-numeric: tabular-nums; min-width: 15em; text-align: right; }
body.has-timeline main { padding-bottom: 3em; }`;

const seconds = (s) => `${s.toFixed(3)} s`;

async function boot() {
  let state;
  try { state = await api.get('/api/recording'); } catch (e) { return; }
  if (state.recording === false) return;  // a live app: no timeline
  document.head.append(el('style', { text: STYLE }));
  document.body.classList.add('has-timeline');
  let dragging = false;
  const send = async (body) => {
    try { render(await api.post('/api/recording', body)); } catch (e) { showError(`timeline: ${e.message}`); }
  };
  const play = el('button', { id: 'tl-play', title: 'play / pause (space)', onclick: () => send({ action: state.playing ? 'pause' : 'play' }) });
  const back = el('button', { id: 'tl-back', title: 'one message back (←)', text: '⏮', onclick: () => send({ action: 'step', count: -1 }) });
  const step = el('button', { id: 'tl-step', title: 'one message on (→)', text: '⏭', onclick: () => send({ action: 'step', count: 1 }) });
  const seek = el('input', { id: 'tl-seek', type: 'range', min: 0, max: state.end || 0, step: 'any', value: 0, title: 'seek' });
  seek.addEventListener('input', () => { dragging = true; time.textContent = `${seconds(Number(seek.value))} / ${seconds(state.end)}`; });
  seek.addEventListener('change', () => { dragging = false; send({ action: 'seek', time: Number(seek.value) }); });
  const rate = el('select', { id: 'tl-rate', title: 'playback rate', onchange: () => send({ action: state.playing ? 'play' : 'pause', rate: Number(rate.value) }) },
    ...state.rates.map((r) => el('option', { value: r, text: `${r}×`, selected: r === state.rate })));
  const time = el('span', { id: 'tl-time', class: 'tl-time muted' });
  const where = el('span', { id: 'tl-message', class: 'muted' });
  // chunks found damaged while reading (their messages are skipped): known only once read
  const damaged = el('span', { id: 'tl-damaged', class: 'tl-damaged' });
  document.body.append(el('footer', { id: 'timeline', dataset: { file: state.file } },
    el('span', { class: 'muted', text: 'recording' }), back, play, step, seek, rate, time, where, damaged));
  document.addEventListener('keydown', (e) => {
    if (e.target.tagName === 'INPUT' && e.target.type !== 'range') return;
    if (e.key === ' ') { e.preventDefault(); play.click(); }
    else if (e.key === 'ArrowRight') step.click();
    else if (e.key === 'ArrowLeft') back.click();
  });
  function render(next) {
    state = next;
    play.textContent = state.playing ? '⏸' : '▶';
    if (!dragging) seek.value = state.position;
    time.textContent = `${seconds(state.position)} / ${seconds(state.end)}`;
    where.textContent = state.index >= 0 ? `message ${state.index + 1} of ${state.messages} · ${state.topic}` : '';
    const bar = document.getElementById('timeline');
    bar.dataset.index = String(state.index);
    bar.dataset.acqtime = String(state.acqtime);
    bar.dataset.playing = String(state.playing);
    const lost = state.damaged || [];
    damaged.textContent = lost.length ? `⚠ ${lost.length} damaged chunk${lost.length > 1 ? 's' : ''} skipped` : '';
    damaged.title = lost.map((d) => `byte ${d.offset}: ${d.why}`).join('\n');
  }
  render(state);
  setInterval(async () => {
    try { render(await api.get('/api/recording')); } catch (e) { /* the stream's badge shows a lost viewer */ }
  }, 250);
}

document.addEventListener('DOMContentLoaded', boot);
