// The virtual board's UDP networking, board side (vboard.mjs --net).
//
// MicroPython runs on the board's (the main) thread and calls JS
// synchronously; Node's sockets are asynchronous. So a worker thread
// (networker.mjs) owns the sockets, and each call from Python posts one
// request to it and blocks in Atomics.wait on a SharedArrayBuffer until the
// worker has written the answer there:
//
//   i32[0]  seq of the answered request (0 while waiting)
//   i32[1]  status: >= 0, or -errno (MicroPython's numbers, Linux's)
//   i32[2]  payload length
//   bytes HDR.. payload (at most DATA_MAX octets)
//
// The wait is sliced (SLICE_MS): between slices the board looks at its
// terminal (Ctrl-C), its watchdog and its output, since nothing else runs on
// this thread while Python waits.
//
// pyModule() is the `_vboardnet` module the socket and select shims
// (socket.py, select.py beside this file) call. Data crosses the JS proxy as
// hex strings, addresses as "a.b.c.d" and numbers.
import { Worker } from "node:worker_threads";
import os from "node:os";

const HDR = 16;
const DATA_MAX = 65536 + 64; // an IPv4 UDP datagram (<= 65507) and its address
const SLICE_MS = 20;
const E = os.constants.errno;
export const UDP_MAX = 65507; // 65535 - 8 (UDP header) - 20 (IPv4 header)

export class Net {
  constructor() {
    this.sab = new SharedArrayBuffer(HDR + DATA_MAX);
    this.i32 = new Int32Array(this.sab, 0, 4);
    this.data = new Uint8Array(this.sab, HDR);
    this.worker = new Worker(new URL("./networker.mjs", import.meta.url), { workerData: { sab: this.sab } });
    this.worker.unref();
    this.seq = 0;
  }

  // One request, answered synchronously: {status, payload}. `whileWaiting`
  // runs between slices of the wait; it may call cancel().
  request(msg, whileWaiting) {
    this.seq = (this.seq % 0x3fffffff) + 1;
    const seq = this.seq;
    Atomics.store(this.i32, 0, 0);
    this.worker.postMessage({ ...msg, seq });
    while (Atomics.load(this.i32, 0) !== seq) {
      Atomics.wait(this.i32, 0, 0, SLICE_MS);
      if (Atomics.load(this.i32, 0) !== seq && whileWaiting) whileWaiting();
    }
    const status = Atomics.load(this.i32, 1);
    const n = Atomics.load(this.i32, 2);
    return { status, payload: Buffer.from(this.data.subarray(0, n)) };
  }

  cancel() {
    this.worker.postMessage({ op: "cancel" });
  }
}

function addr(p) {
  return `${p[0]}.${p[1]}.${p[2]}.${p[3]},${p.readUInt16BE(4)}`;
}

// The module Python sees. `board` supplies:
//   flush()             write pending console output
//   beforeBlock(heap)   "!yield" / "!reset" / "!intr" to unwind instead of
//                       waiting, or null (heap: gc.mem_alloc() while the
//                       firmware app runs, else -1)
//   whileBlocked()      the same question between slices of a wait
//   yieldState()        UNWINDING while a top-level yield unwinds Python,
//                       RESUMING until the resumed program polls again
//   resumed()           the resumed program is polling: the yield is over
//
// Sockets across a top-level yield: the unwinding program closes its
// sockets (ike.device's `finally`); they are parked instead, and the
// resumed program's bind() to the same address gets the same socket back,
// datagrams queued in it included, so the yield (an artefact of this port,
// not something a device does) loses nothing. What the resumed program does
// not take back is closed at its first poll.
export const UNWINDING = 1;
export const RESUMING = 2;

export function pyModule(net, board) {
  const req = (msg, w) => net.request(msg, w);
  const bound = new Map(); // id -> "ip:port" asked for in bind
  const parked = new Map(); // "ip:port" -> id
  const dropParked = () => {
    for (const id of parked.values()) req({ op: "close", id });
    parked.clear();
  };
  return {
    reset: () => {
      bound.clear();
      parked.clear();
      return req({ op: "reset" }).status;
    },
    dropParked,
    socket: () => req({ op: "socket" }).status,
    reuse: (id, on) => req({ op: "reuse", id, on: !!on }).status,
    // "id,ip,port" of the bound socket, or "-errno".
    bind: (id, ip, port) => {
      const key = `${ip}:${port}`;
      const old = parked.get(key);
      if (old !== undefined) {
        parked.delete(key);
        req({ op: "close", id });
        bound.set(old, key);
        return `${old},${ip},${port}`;
      }
      const r = req({ op: "bind", id, ip, port });
      if (r.status < 0) return String(r.status);
      const a = addr(r.payload);
      bound.set(id, `${ip}:${a.split(",")[1]}`);
      return `${id},${a}`;
    },
    sendto: (id, hex, ip, port) => {
      if (hex.length > 2 * UDP_MAX) return -E.EMSGSIZE;
      return req({ op: "send", id, data: Buffer.from(hex, "hex"), ip, port }).status;
    },
    // "ip,port,hex" or "-errno"
    recvfrom: (id, n) => {
      const r = req({ op: "recv", id, n: Math.max(0, Math.min(n | 0, UDP_MAX)) });
      if (r.status < 0) return String(r.status);
      return `${addr(r.payload)},${r.payload.subarray(6).toString("hex")}`;
    },
    // spec "id:mask,id:mask,..." -> "id:events,..." or "!intr"/"!yield"/"!reset"
    poll: (spec, timeout, heap) => {
      board.flush();
      if (board.yieldState() === RESUMING) {
        dropParked();
        board.resumed();
      }
      let verdict = board.beforeBlock(heap);
      if (verdict) return verdict;
      const ids = [];
      const masks = [];
      for (const item of spec ? spec.split(",") : []) {
        const [i, m] = item.split(":");
        ids.push(parseInt(i, 10));
        masks.push(parseInt(m, 10));
      }
      const r = req({ op: "poll", ids, masks, timeout: timeout < 0 ? -1 : timeout }, () => {
        if (verdict) return;
        verdict = board.whileBlocked();
        if (verdict) net.cancel();
      });
      if (verdict) return verdict;
      const out = [];
      for (let k = 0; k < r.status; k++) out.push(`${r.payload.readInt32LE(8 * k)}:${r.payload.readInt32LE(8 * k + 4)}`);
      return out.join(",");
    },
    close: (id) => {
      const key = bound.get(id);
      bound.delete(id);
      if (key !== undefined && board.yieldState() === UNWINDING) {
        parked.set(key, id);
        return 0;
      }
      return req({ op: "close", id }).status;
    },
  };
}
