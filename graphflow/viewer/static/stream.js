// The WebSocket stream: JSON text messages and binary frames ([uint32 header length][JSON][bytes]).
// The server closes a stream that stays silent for its idle timeout (120 s), so the page pings.
const PING_MS = 20000;

export class Stream {
  constructor(handlers) {
    this.handlers = handlers;   // {open, close, json(msg), binary(header, blob)}
    this.ws = null;
    this.subscription = null;
    this.retry = 500;
  }

  connect() {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const ws = new WebSocket(`${scheme}://${location.host}/api/stream`);
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    ws.onopen = () => {
      this.retry = 500;
      clearInterval(this.pinger);
      this.pinger = setInterval(() => this.send({ op: 'ping', t: Date.now() / 1000 }), PING_MS);
      this.handlers.open();
      if (this.subscription) this.send(this.subscription);
    };
    ws.onclose = () => {
      clearInterval(this.pinger);
      this.handlers.close();
      setTimeout(() => this.connect(), this.retry);
      this.retry = Math.min(this.retry * 2, 5000);
    };
    ws.onmessage = (event) => {
      if (typeof event.data === 'string') {
        this.handlers.json(JSON.parse(event.data));
        return;
      }
      const bytes = new Uint8Array(event.data);
      const length = new DataView(event.data).getUint32(0);
      const header = JSON.parse(new TextDecoder().decode(bytes.subarray(4, 4 + length)));
      const mime = header.mime || (header.image && header.image.mime) || 'application/octet-stream';
      this.handlers.binary(header, new Blob([bytes.subarray(4 + length)], { type: mime }));
    };
  }

  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  subscribe(windows) {
    this.subscription = { op: 'subscribe', windows };
    this.send(this.subscription);
  }
}
