// The virtual board's network (qcdhost/emu/wasm/shims/net.mjs starts it): a
// Node worker thread that owns the board's UDP sockets (node:dgram on the
// host's IPv4 stack) and answers the board's requests one at a time.
//
// Requests arrive as messages {seq, op, ...}; every request gets exactly one
// answer, written into the shared buffer (layout in net.mjs):
//   i32[1] status (>= 0, or -errno with MicroPython's errno numbers, which
//   are Linux's), i32[2] payload length, payload at byte HDR; then i32[0] =
//   seq and Atomics.notify, which wakes the board's thread blocked in
//   Atomics.wait. A payload never exceeds the shared buffer: a datagram is at
//   most 65507 octets (IPv4 UDP) and the buffer holds 65536 plus the header;
//   anything larger is answered -EMSGSIZE, never written.
//
// The board's thread is blocked while it waits, so this thread does the I/O:
// bind and send complete here (their callbacks), received datagrams queue
// here per socket (bounded, like a socket's receive buffer: beyond
// QUEUE_MAX datagrams or QUEUE_BYTES octets new ones are dropped), and a
// poll that finds nothing ready waits here for a datagram or its timeout.
import dgram from "node:dgram";
import os from "node:os";
import { parentPort, workerData } from "node:worker_threads";

const HDR = 16;
const { sab } = workerData;
const i32 = new Int32Array(sab, 0, 4);
const data = new Uint8Array(sab, HDR);
const E = os.constants.errno;
const QUEUE_MAX = 64;
const QUEUE_BYTES = 256 * 1024;
const MAX_SOCKETS = 16; // lwIP's CONFIG_LWIP_MAX_SOCKETS is 10 by default
const ENFILE = 23;
// MicroPython's select constants (extmod/modselect.c, py/stream.h).
const POLLIN = 0x01;
const POLLOUT = 0x04;
const POLLERR = 0x08;
const POLLNVAL = 0x20;

const socks = new Map(); // id -> {sock, reuse, bound, queue, qbytes, error, dropped}
let nextId = 1;
let pending = null; // a poll waiting: {seq, ids, masks, timer}

function answer(seq, status, payload) {
  let n = 0;
  if (payload) {
    if (payload.length > data.length) {
      status = -E.EMSGSIZE;
    } else {
      data.set(payload, 0);
      n = payload.length;
    }
  }
  Atomics.store(i32, 1, status);
  Atomics.store(i32, 2, n);
  Atomics.store(i32, 0, seq);
  Atomics.notify(i32, 0);
}

function errno(e) {
  const n = e && e.code && E[e.code];
  if (n) return -n;
  // Node's own argument checks (ERR_SOCKET_BAD_PORT, ERR_INVALID_ARG_...):
  // what the stack would have called an invalid argument.
  if (e instanceof RangeError || e instanceof TypeError || (e && String(e.code).startsWith("ERR_"))) return -E.EINVAL;
  return -E.EIO;
}

function ipBytes(ip) {
  return ip.split(".").map((x) => parseInt(x, 10));
}

// ip (4 octets) + port (2 octets, big-endian) + rest
function addrPayload(ip, port, rest) {
  const b = Buffer.alloc(6 + (rest ? rest.length : 0));
  b.set(ipBytes(ip), 0);
  b.writeUInt16BE(port, 4);
  if (rest) b.set(rest, 6);
  return b;
}

function readiness(id, mask) {
  const s = socks.get(id);
  if (!s) return POLLNVAL;
  let ev = 0;
  if (mask & POLLIN && s.queue.length) ev |= POLLIN;
  if (mask & POLLOUT) ev |= POLLOUT; // UDP: always writable
  if (s.error) ev |= POLLERR; // reported whatever the mask, as MicroPython does
  return ev;
}

function scan(ids, masks) {
  const out = [];
  for (let k = 0; k < ids.length; k++) {
    const ev = readiness(ids[k], masks[k]);
    if (ev) out.push([ids[k], ev]);
  }
  return out;
}

function pollPayload(ready) {
  const b = Buffer.alloc(ready.length * 8);
  ready.forEach(([id, ev], k) => {
    b.writeInt32LE(id, 8 * k);
    b.writeInt32LE(ev, 8 * k + 4);
  });
  return b;
}

function finishPoll() {
  if (!pending) return;
  const p = pending;
  pending = null;
  if (p.timer) clearTimeout(p.timer);
  const ready = scan(p.ids, p.masks);
  answer(p.seq, ready.length, pollPayload(ready));
}

function wakePoll(id) {
  if (pending && pending.ids.includes(id) && scan(pending.ids, pending.masks).length) finishPoll();
}

// The Node socket behind a board socket, made on bind (or on the first send,
// which binds to any address and port, as the stack does for an unbound UDP
// socket): SO_REUSEADDR must be known when it is made.
function open(s, id) {
  const sock = dgram.createSocket({ type: "udp4", reuseAddr: s.reuse });
  sock.on("message", (msg, rinfo) => {
    if (s.queue.length >= QUEUE_MAX || s.qbytes + msg.length > QUEUE_BYTES) {
      s.dropped++;
      return;
    }
    s.queue.push([msg, rinfo.address, rinfo.port]);
    s.qbytes += msg.length;
    wakePoll(id);
  });
  sock.on("error", (e) => {
    s.error = errno(e);
    wakePoll(id);
  });
  s.sock = sock;
  return sock;
}

function bind(s, id, ip, port) {
  return new Promise((resolve) => {
    const sock = open(s, id);
    const fail = (e) => {
      sock.removeListener("listening", ok);
      s.sock = null;
      try {
        sock.close();
      } catch (e2) {
        /* already closed */
      }
      resolve(errno(e));
    };
    const ok = () => {
      sock.removeListener("error", fail);
      s.bound = true;
      resolve(0);
    };
    sock.once("error", fail);
    sock.once("listening", ok);
    sock.bind({ address: ip, port, exclusive: true });
  });
}

function closeSocket(id) {
  const s = socks.get(id);
  if (!s) return;
  socks.delete(id);
  if (s.sock) {
    try {
      s.sock.close();
    } catch (e) {
      /* already closed */
    }
  }
}

async function handle(m) {
  const s = m.id !== undefined ? socks.get(m.id) : null;
  switch (m.op) {
    case "reset":
      if (pending) finishPoll();
      for (const id of [...socks.keys()]) closeSocket(id);
      return answer(m.seq, 0);
    case "socket": {
      if (socks.size >= MAX_SOCKETS) return answer(m.seq, -ENFILE);
      while (socks.has(nextId)) nextId = (nextId % 0x7fff) + 1;
      const id = nextId;
      nextId = (nextId % 0x7fff) + 1;
      socks.set(id, { sock: null, reuse: false, bound: false, queue: [], qbytes: 0, error: 0, dropped: 0 });
      return answer(m.seq, id);
    }
    case "reuse":
      if (!s) return answer(m.seq, -E.EBADF);
      if (s.sock) return answer(m.seq, 0); // too late to matter, as on a bound socket
      s.reuse = !!m.on;
      return answer(m.seq, 0);
    case "bind": {
      if (!s) return answer(m.seq, -E.EBADF);
      if (s.sock) return answer(m.seq, -E.EINVAL); // already bound
      const rc = await bind(s, m.id, m.ip, m.port);
      if (rc) return answer(m.seq, rc);
      const a = s.sock.address();
      return answer(m.seq, 0, addrPayload(a.address, a.port));
    }
    case "send": {
      if (!s) return answer(m.seq, -E.EBADF);
      if (!s.sock) {
        const rc = await bind(s, m.id, "0.0.0.0", 0);
        if (rc) return answer(m.seq, rc);
      }
      const buf = Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength);
      try {
        s.sock.send(buf, m.port, m.ip, (e) => answer(m.seq, e ? errno(e) : buf.length));
      } catch (e) {
        return answer(m.seq, errno(e)); // e.g. port 0
      }
      return undefined;
    }
    case "recv": {
      if (!s) return answer(m.seq, -E.EBADF);
      if (s.error) {
        const rc = s.error;
        s.error = 0;
        return answer(m.seq, rc);
      }
      if (!s.queue.length) return answer(m.seq, -E.EAGAIN);
      const [msg, ip, port] = s.queue.shift();
      s.qbytes -= msg.length;
      // A datagram longer than the reader's buffer is cut to it and the rest
      // discarded, as lwIP's recvfrom does (no MSG_TRUNC).
      const n = Math.max(0, Math.min(m.n, msg.length, data.length - 6));
      return answer(m.seq, 0, addrPayload(ip, port, msg.subarray(0, n)));
    }
    case "poll": {
      if (pending) finishPoll(); // cannot happen: the board waits for each answer
      const ready = scan(m.ids, m.masks);
      if (ready.length || m.timeout === 0) return answer(m.seq, ready.length, pollPayload(ready));
      pending = { seq: m.seq, ids: m.ids, masks: m.masks, timer: null };
      if (m.timeout > 0) pending.timer = setTimeout(finishPoll, m.timeout);
      return undefined;
    }
    case "cancel":
      // The board stops waiting (Ctrl-C, watchdog): answer the poll now.
      finishPoll();
      return undefined;
    case "close":
      closeSocket(m.id);
      return answer(m.seq, 0);
    case "stats": {
      const st = s ? { queued: s.queue.length, dropped: s.dropped, bound: s.bound } : null;
      return answer(m.seq, 0, Buffer.from(JSON.stringify(st)));
    }
    default:
      return answer(m.seq, -E.EINVAL);
  }
}

parentPort.on("message", (m) => {
  handle(m).catch((e) => {
    // A bug here must not leave the board waiting for an answer.
    process.stderr.write(`vboard net: ${e.stack || e}\n`);
    answer(m.seq, -E.EIO);
  });
});
