// 2-D renderer: an image channel drawn to fit, skeleton channels drawn over it in image pixels
// (the server pairs them by acqtime). Hover a joint for its name and confidence.
import { fmt } from './api.js';

const LIMB_COLORS = ['#ff4d4d', '#ffa64d', '#ffff4d', '#4dff88', '#4dd2ff', '#4d79ff', '#b84dff', '#ff4dd2'];

export function scoreColor(score) {
  return `hsl(${Math.round(120 * Math.max(0, Math.min(1, score)))}, 100%, 50%)`;  // red → green
}

export class View2D {
  constructor(body, win) {
    this.win = win;
    this.canvas = document.createElement('canvas');
    this.tooltip = document.createElement('div');
    this.tooltip.className = 'tooltip';
    this.tooltip.hidden = true;
    this.note = document.createElement('div');
    this.note.className = 'win-note';
    body.append(this.canvas, this.note, this.tooltip);
    this.bitmap = null;
    this.frame = null;
    this.joints = [];
    this.canvas.addEventListener('mousemove', (e) => this.hover(e));
    this.canvas.addEventListener('mouseleave', () => { this.tooltip.hidden = true; });
    new ResizeObserver(() => this.resize()).observe(this.canvas);
    this.resize();
  }

  size() {
    const ratio = window.devicePixelRatio || 1;
    return { width: Math.max(16, Math.round(this.canvas.clientWidth * ratio)),
             height: Math.max(16, Math.round(this.canvas.clientHeight * ratio)) };
  }

  resize() {
    const { width, height } = this.size();
    if (this.canvas.width !== width || this.canvas.height !== height) {
      this.canvas.width = width;
      this.canvas.height = height;
      this.draw();
      this.win.resized();
    }
  }

  async frameReceived(header, blob) {
    const bitmap = header.image ? await createImageBitmap(blob) : null;
    if (this.bitmap) this.bitmap.close();
    this.bitmap = bitmap;
    this.frame = header;
    this.draw();
    const el = this.win.el;
    el.dataset.frames = String(Number(el.dataset.frames || 0) + 1);
    el.dataset.acqtime = String(header.image ? header.image.acqtime : (header.overlays[0] || {}).acqtime);
    el.dataset.synced = String(header.synced);
    el.dataset.joints = String(this.joints.length);
  }

  draw() {
    const ctx = this.canvas.getContext('2d');
    const W = this.canvas.width, H = this.canvas.height;
    ctx.fillStyle = '#0d0f12';
    ctx.fillRect(0, 0, W, H);
    this.joints = [];
    const f = this.frame;
    if (!f) return;
    const first = f.overlays[0] || {};
    const iw = f.image ? f.image.image_width : (first.image_width || W);
    const ih = f.image ? f.image.image_height : (first.image_height || H);
    const scale = Math.min(W / iw, H / ih);
    const ox = (W - iw * scale) / 2, oy = (H - ih * scale) / 2;
    if (this.bitmap) ctx.drawImage(this.bitmap, ox, oy, iw * scale, ih * scale);
    const ratio = window.devicePixelRatio || 1;
    for (const overlay of f.overlays) {
      if (overlay.render !== 'skeleton2') continue;
      const sx = overlay.image_width && f.image ? iw / overlay.image_width : 1;  // skeleton image → this image
      const sy = overlay.image_height && f.image ? ih / overlay.image_height : 1;
      const at = (j) => [ox + j[0] * sx * scale, oy + j[1] * sy * scale];
      overlay.joints.forEach((person, p) => {
        ctx.lineWidth = 3 * ratio;
        overlay.edges.forEach(([a, b], i) => {
          const ja = person[a], jb = person[b];
          if (!ja || !jb || ja[2] <= 0 || jb[2] <= 0) return;
          ctx.strokeStyle = LIMB_COLORS[i % LIMB_COLORS.length];
          ctx.beginPath();
          ctx.moveTo(...at(ja));
          ctx.lineTo(...at(jb));
          ctx.stroke();
        });
        person.forEach((j, k) => {
          if (j[2] <= 0) return;
          const [x, y] = at(j);
          ctx.fillStyle = scoreColor(j[2]);
          ctx.beginPath();
          ctx.arc(x, y, 5 * ratio, 0, 2 * Math.PI);
          ctx.fill();
          ctx.strokeStyle = '#000';
          ctx.lineWidth = 1 * ratio;
          ctx.stroke();
          this.joints.push({ x, y, person: p, label: overlay.labels[k] || `joint ${k}`, score: j[2],
                             ix: j[0], iy: j[1], channel: overlay.channel,
                             personScore: overlay.scores[p] });
        });
      });
    }
    this.note.textContent = f.synced ? '' : 'overlay not in sync (it lags behind the images)';
  }

  hover(event) {
    const ratio = this.canvas.width / this.canvas.clientWidth;
    const rect = this.canvas.getBoundingClientRect();
    const x = (event.clientX - rect.left) * ratio, y = (event.clientY - rect.top) * ratio;
    let best = null, bestD = 12 * ratio;
    for (const j of this.joints) {
      const d = Math.hypot(j.x - x, j.y - y);
      if (d < bestD) { best = j; bestD = d; }
    }
    if (!best) { this.tooltip.hidden = true; return; }
    this.tooltip.hidden = false;
    this.tooltip.textContent = `person ${best.person} · ${best.label} · score ${fmt(best.score, 2)} · (${fmt(best.ix, 1)}, ${fmt(best.iy, 1)})`;
    this.tooltip.style.left = `${event.clientX - rect.left + 12}px`;
    this.tooltip.style.top = `${event.clientY - rect.top + 12}px`;
  }

  subscription() {
    return this.size();
  }
}
