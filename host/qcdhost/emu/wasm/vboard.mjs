// The qcd virtual board: the MicroPython WebAssembly port behind a terminal,
// with an ESP32's flash, so mpremote (and the qcd tools built on it) drive it
// as they drive a real board. Started by vboard, which owns the
// pseudo-terminal; this file is the board.
//
//   node qcdhost/emu/wasm/vboard.mjs --image FLASH.bin --fs DIR [--fd N]
//                                [--heap BYTES] [--flash-encryption]
//                                [--net [--yield-kb N] [--gc-log] [--cut-file PATH]]
//                                [--headless] [--stock]
//
// --image  a whole-flash image (4 MiB for the qcd boards), as esptool
//          merge-bin writes it: the partition table at 0x8000 is read from
//          it at every boot, as ESP-IDF's esp_partition does, and `esp32.
//          Partition` reads, programs and erases it in place (NOR rules).
// --fs     a host directory that holds the board's filesystem. A real board
//          keeps it in the `vfs` partition (littlefs); the WebAssembly port
//          has only an in-memory filesystem, so its files are loaded from DIR
//          at every boot and every change is written through to DIR.
// --fd     the terminal: a file descriptor (the pty master from vboard);
//          without it, stdin/stdout.
// --net    UDP networking on the host's IPv4 stack: `socket` (AF_INET,
//          SOCK_DGRAM) and `select` (poll over those sockets and anything
//          the port's own select polls), shims in shims/ with the esp32
//          port's behaviour, served by a worker thread (shims/net.mjs,
//          networker.mjs); plus the esp32 firmware's `cryptolib` (AES ECB,
//          CBC) and `hashlib.sha1`, which IKE needs and this port lacks.
//          Default off: without it the board has no socket module.
// --headless  no terminal: the console goes to stdout, nothing is read;
//          power on, boot.py, main.py (resets as the board does them), and
//          exit 0 once main.py and the asyncio tasks it created have ended
//          (this port's asyncio runs them from JS timers). SIGKILL is a
//          power cut.
// --stock  the frozen modules of stock ESP32 firmware only. This port
//          freezes a set of micropython-lib modules (hmac, unittest, logging,
//          functools, copy, types, base64, datetime, ...) that stock
//          MicroPython 1.27/1.28 ESP32 firmware does not have: its
//          ports/esp32/boards/manifest.py freezes _boot, inisetup, flashbdev,
//          espnow, asyncio, mip, ntptime, ssl, requests, webrepl,
//          aioespnow, dht, ds18x20, neopixel, onewire, umqtt, upysh
//          (micropython-esp32-reference.md §4). With --stock a frozen
//          module outside that list is hidden: importing it looks only at
//          the filesystem ('' and /lib), so it imports when it was installed
//          there, as on a board, and is an ImportError otherwise. Built-in
//          (C) modules stay. Done with builtins.__import__ (the port allows
//          it to be replaced), dropping '.frozen' from sys.path around the
//          import of a hidden name. Not hidden: `os`, which the board imports
//          (as this port's frozen os package) to give it os.urandom before
//          any user code; the esp32 port has os built in, with urandom.
// --yield-kb, --gc-log  see "Garbage collection" below.
// --cut-file PATH  a power cut in the middle of a flash write, on demand:
//          when PATH appears (checked at every select.poll, so within half
//          a second in the app), the flash emulator tears its next program
//          or erase; the PowerCut it raises ends the board with status 137,
//          as the power going would. tools/demo.py uses it.
//
// The terminal speaks MicroPython's REPL protocol: the friendly REPL, raw
// REPL (Ctrl-A), soft reset (Ctrl-D), and raw-paste mode answered "R\x00"
// (understood, not supported: the port's raw-paste reader blocks on stdin,
// which this event-driven REPL cannot give it), so mpremote falls back to
// plain raw mode as it does with older firmware.
//
// Resets. Soft reset (Ctrl-D, machine.soft_reset): a fresh interpreter, then
// boot.py. Hard reset (machine.reset, the watchdog): a fresh interpreter,
// boot.py, then main.py (at power-on too). In raw REPL mode a soft reset
// skips main.py, as ports/esp32/main.c does. Each interpreter is a new
// WebAssembly instance: nothing of the old Python heap survives.
//
// Garbage collection: this port collects only when control is back in JS
// (see run.mjs). The REPL returns to JS after every character, so a pending
// collection runs between characters: garbage made by one mpremote command
// is collected by the next (checked: 40 x 100 KB in one exec leaves 4.6 MB
// allocated; gc.collect() in the next exec brings it back to 0.7 MB). The
// heap is not a device's: this build (split heap, auto) grows it on demand,
// so --heap is only its initial size, and nothing here measures memory.
//
// With --net the firmware app (main.py -> qcdapp -> ike.device.run) runs for
// as long as the board is up and never returns to JS by itself. So while it
// waits in select.poll, after more than --yield-kb KiB (default 1024) of
// allocation since the last collection, the board unwinds it to the top
// level (SystemExit, which the app does not catch), the collection runs,
// and the board calls qcdapp.resume(), which goes on with the same engine on
// the same sockets (parked meanwhile, so no datagram is lost); the network
// section further down has the details. --gc-log writes one line per such
// collection (bytes allocated before and after) and the app's heap every
// 30 s to stderr. Measured (6 minutes, an IKE SA, a liveness check every
// 2 s, --yield-kb 256): 155760 bytes live after each of 8 collections,
// process RSS flat at 69-71 MB; without the yield the heap grows about
// 5 KB/s there.
//
// While Python runs a program that waits in select.poll or a blocking
// recvfrom (--net), or sleeps in time.sleep/sleep_ms/sleep_us (shims/
// time.py, with or without --net), the board's thread still reads its
// terminal (--fd):
// Ctrl-C raises KeyboardInterrupt in the program (mpremote, qcdboard diag),
// other input waits for the REPL; and an unfed watchdog resets the board.
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";
import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import tty from "node:tty";
import { fileURLToPath } from "node:url";
import { Net, pyModule as netModule, RESUMING, UNWINDING } from "./shims/net.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
// Python modules installed at every boot: [name, file]. _flashemu is the
// flash emulator (qcdhost/emu/flash.py) the encrypted partitions use.
const SHIMS = [
  ["_flashemu", path.join(HERE, "..", "flash.py")],
  ["esp32", path.join(HERE, "shims", "esp32.py")],
  ["machine", path.join(HERE, "shims", "machine.py")],
  ["time", path.join(HERE, "shims", "time.py")],
  ["_vboardfs", path.join(HERE, "shims", "_vboardfs.py")],
].filter(([, f]) => fs.existsSync(f));
// With --net: UDP sockets and select.poll over them, and the esp32
// firmware's crypto built-ins that the WebAssembly port lacks (IKE needs
// them). select.py shadows the port's built-in select (reachable as
// uselect), hashlib.py its hashlib (uhashlib).
const NET_SHIMS = ["socket", "select", "cryptolib", "hashlib"].map((m) => [m, path.join(HERE, "shims", `${m}.py`)]);

function usage(msg) {
  process.stderr.write(`vboard.mjs: ${msg}\nusage: node vboard.mjs --image FLASH.bin --fs DIR [--fd N] [--heap BYTES] [--flash-encryption]\n                         [--net] [--headless] [--yield-kb N] [--gc-log] [--cut-file PATH]\n`);
  process.exit(2);
}

const opts = { heap: 2 * 1024 * 1024, fd: null, image: null, fsdir: null, encryption: false, net: false, headless: false, stock: false, yieldKb: 1024, gcLog: false, cutFile: null };
{
  const a = process.argv.slice(2);
  while (a.length) {
    const o = a.shift();
    if (o === "--image") opts.image = a.shift();
    else if (o === "--fs") opts.fsdir = a.shift();
    else if (o === "--fd") opts.fd = parseInt(a.shift(), 10);
    else if (o === "--heap") opts.heap = parseInt(a.shift(), 10);
    else if (o === "--flash-encryption") opts.encryption = true;
    else if (o === "--net") opts.net = true;
    else if (o === "--headless") opts.headless = true;
    else if (o === "--stock") opts.stock = true;
    else if (o === "--cut-file") opts.cutFile = a.shift();
    else if (o === "--yield-kb") opts.yieldKb = parseInt(a.shift(), 10);
    else if (o === "--gc-log") opts.gcLog = true;
    else usage(`unknown option ${o}`);
  }
  if (!opts.image) usage("no --image");
  if (!opts.fsdir) usage("no --fs");
  if (!(opts.heap > 0)) usage("--heap wants a number of bytes");
  if (!(opts.yieldKb > 0)) usage("--yield-kb wants a number of KiB");
  if (opts.headless && opts.fd !== null) usage("--headless has no terminal: no --fd");
}
const shims = opts.net ? [...SHIMS, ...NET_SHIMS] : SHIMS;
// --stock: what ports/esp32/boards/manifest.py (v1.27.0, v1.28.0) freezes,
// by top-level name; every other frozen module of this port is hidden.
const STOCK_FROZEN = ["_boot", "inisetup", "flashbdev", "espnow", "asyncio", "mip", "ntptime", "ssl", "requests", "webrepl", "webrepl_setup", "aioespnow", "dht", "ds18x20", "neopixel", "onewire", "umqtt", "upysh"];
const STOCK_IMPORT = [
  "import builtins, sys",
  "def _vboard_import(name, *args, _orig=builtins.__import__, _keep=" + JSON.stringify(STOCK_FROZEN).replace(/"/g, "'") + ", _sys=sys):",
  "    if name and not (len(args) > 3 and args[3]) and name not in _sys.modules and name.split('.')[0] not in _keep:",
  "        path = _sys.path",
  "        saved = path[:]",
  "        path[:] = [p for p in saved if p != '.frozen']",
  "        try:",
  "            return _orig(name, *args)",
  "        finally:",
  "            path[:] = saved",
  "    return _orig(name, *args)",
  "builtins.__import__ = _vboard_import",
  "del builtins, sys, _vboard_import",
].join("\n");

// ---------------------------------------------------------------- the flash

const SECTOR = 4096;
const TABLE_OFFSET = 0x8000; // CONFIG_PARTITION_TABLE_OFFSET
const TABLE_MAX = 0xc00; // gen_esp32part.py MAX_PARTITION_LENGTH
// ESP-IDF esp_err.h codes, negated as MicroPython's check_esp_err raises them.
const ERR_INVALID_ARG = -0x102;
const ERR_INVALID_SIZE = -0x104;
const ERR_NOT_ALLOWED = -0x10d;

let flashFd;
let flashSize;
try {
  flashFd = fs.openSync(opts.image, "r+");
  flashSize = fs.fstatSync(flashFd).size;
} catch (e) {
  usage(`cannot open the flash image ${opts.image}: ${e.message}`);
}
if (flashSize < TABLE_OFFSET + TABLE_MAX || flashSize % SECTOR) {
  usage(`${opts.image} is ${flashSize} bytes: not a whole-flash image (qcdboard image makes one)`);
}

function flashRead(addr, n) {
  const b = Buffer.alloc(n);
  fs.readSync(flashFd, b, 0, n, addr);
  return b;
}

// The partition table as ESP-IDF's esp_partition reads it from flash: 32-byte
// entries (magic 0x50AA little-endian, type, subtype, offset, size, label[16],
// flags; bit 0 = encrypted, bit 1 = readonly) until 0xFF padding, with the
// 0xEBEB MD5 entry checked. Then, as ports/esp32/main.c does when no DATA
// partition is labelled "vfs" or "ffat", a "vfs" (DATA/FAT) partition from
// the end of the highest partition to the end of flash.
function readPartitionTable() {
  const raw = flashRead(TABLE_OFFSET, TABLE_MAX);
  const parts = [];
  const md5 = createHash("md5");
  let md5ok = false;
  for (let o = 0; o + 32 <= raw.length; o += 32) {
    const e = raw.subarray(o, o + 32);
    if (e[0] === 0xeb && e[1] === 0xeb) {
      const want = md5.copy().digest();
      if (!want.equals(e.subarray(16, 32))) return { parts: [], error: "partition table MD5 mismatch" };
      md5ok = true;
      continue;
    }
    if (e[0] !== 0xaa || e[1] !== 0x50) break; // end of table (0xFF) or not a table
    md5.update(e);
    const label = e.subarray(12, 28);
    const end = label.indexOf(0);
    const flags = e.readUInt32LE(28);
    parts.push({
      type: e[2],
      subtype: e[3],
      addr: e.readUInt32LE(4),
      size: e.readUInt32LE(8),
      label: label.subarray(0, end < 0 ? 16 : end).toString("latin1"),
      encrypted: (flags & 1) !== 0,
      readonly: (flags & 2) !== 0,
    });
  }
  if (!parts.length) return { parts: [], error: `no partition table at 0x${TABLE_OFFSET.toString(16)}` };
  if (!md5ok) return { parts: [], error: "partition table has no MD5 entry" };
  for (const p of parts) {
    if (p.addr + p.size > flashSize) return { parts: [], error: `partition ${p.label} runs past the end of the ${flashSize}-byte flash` };
  }
  if (!parts.some((p) => p.type === 1 && (p.label === "vfs" || p.label === "ffat"))) {
    const end = Math.max(...parts.map((p) => p.addr + p.size));
    if (end < flashSize) parts.push({ type: 1, subtype: 0x81, addr: end, size: flashSize - end, label: "vfs", encrypted: false, readonly: false });
  }
  return { parts, error: null };
}

let table = readPartitionTable();

// Files that can hold a secret are created 0600, atomically: the sidecars
// (an encrypted partition's device key) and the board's files mirrored to
// --fs (its qcd.json holds the IKE key). Written under a fresh name opened
// exclusively with mode 0600, then renamed over the target: never readable
// by others, whatever the umask, and never half written (qcdhost.private
// does the same on the Python side).
function writePrivate(target, data) {
  const tmp = path.join(path.dirname(target), `.${path.basename(target)}.${randomBytes(6).toString("hex")}.tmp`);
  try {
    fs.writeFileSync(tmp, data, { mode: 0o600, flag: "wx" });
    fs.renameSync(tmp, target);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}

// The flash emulator's sidecar of a partition (qcdhost/emu/flash.py keeps one
// beside a partition image; here beside the whole-flash image).
function sidecar(p) {
  return `${opts.image}.${p.label}.emu.json`;
}

// ESP-IDF partition_target.c bounds checks, in its order.
function checkRange(p, off, n) {
  if (off > p.size) return ERR_INVALID_ARG;
  if (off + n > p.size) return ERR_INVALID_SIZE;
  return 0;
}

function partRead(i, off, n) {
  const p = table.parts[i];
  const rc = checkRange(p, off, n);
  if (rc) return rc;
  return flashRead(p.addr + off, n).toString("hex");
}

// NOR programming: bits only go from 1 to 0 (the new byte is ANDed in), as
// esp_flash_write does on real flash. With --flash-encryption a write to a
// partition flagged `encrypted` also needs 16-byte alignment of offset and
// length (esp_flash_write_encrypted).
function partWrite(i, off, hex) {
  const p = table.parts[i];
  const data = Buffer.from(hex, "hex");
  if (p.readonly) return ERR_NOT_ALLOWED;
  const rc = checkRange(p, off, data.length);
  if (rc) return rc;
  if (opts.encryption && p.encrypted) {
    if (off % 16) return ERR_INVALID_ARG;
    if (data.length % 16) return ERR_INVALID_SIZE;
  }
  const cur = flashRead(p.addr + off, data.length);
  for (let k = 0; k < data.length; k++) cur[k] &= data[k];
  fs.writeSync(flashFd, cur, 0, cur.length, p.addr + off);
  return 0;
}

function partErase(i, off, n) {
  const p = table.parts[i];
  if (p.readonly) return ERR_NOT_ALLOWED;
  const rc = checkRange(p, off, n);
  if (rc) return rc;
  if (n % SECTOR) return ERR_INVALID_SIZE;
  if (off % SECTOR) return ERR_INVALID_ARG;
  fs.writeSync(flashFd, Buffer.alloc(n, 0xff), 0, n, p.addr + off);
  return 0;
}

// ---------------------------------------------------- the board's filesystem

// Emscripten's own directories in the in-memory filesystem; everything else
// is the board's and is mirrored to --fs.
const NOT_PERSISTED = new Set(["dev", "proc", "tmp", "home"]);
fs.mkdirSync(opts.fsdir, { recursive: true });
const FSROOT = path.resolve(opts.fsdir);

function hostPath(p) {
  const parts = path.posix.normalize(p).split("/").filter(Boolean);
  if (!parts.length || NOT_PERSISTED.has(parts[0])) return null;
  const h = path.join(FSROOT, ...parts);
  return h.startsWith(FSROOT + path.sep) ? h : null;
}

function loadTree(FS, host, dest) {
  for (const name of fs.readdirSync(host)) {
    const h = path.join(host, name);
    const d = dest === "/" ? "/" + name : dest + "/" + name;
    if (dest === "/" && NOT_PERSISTED.has(name)) continue;
    if (fs.statSync(h).isDirectory()) {
      try {
        FS.mkdir(d);
      } catch (e) {
        /* exists */
      }
      loadTree(FS, h, d);
    } else FS.writeFile(d, fs.readFileSync(h));
  }
}

function treeBlocks(dir) {
  let n = 1;
  for (const name of fs.readdirSync(dir)) {
    const st = fs.statSync(path.join(dir, name));
    n += st.isDirectory() ? treeBlocks(path.join(dir, name)) : Math.ceil(st.size / SECTOR);
  }
  return n;
}

// Write every change through to the host directory: files when a stream
// opened for writing is closed, and directory and name changes as they
// happen. The in-memory filesystem stays the one MicroPython works on.
function mirror(FS) {
  const abs = (p) => (p.startsWith("/") ? p : path.posix.join(FS.cwd(), p));
  const wrap = (name, after) => {
    const orig = FS[name];
    FS[name] = function (...args) {
      const r = orig.apply(this, args);
      try {
        after(...args);
      } catch (e) {
        process.stderr.write(`vboard: cannot mirror ${name} to ${FSROOT}: ${e.message}\n`);
      }
      return r;
    };
  };
  wrap("close", (stream) => {
    if ((stream.flags & 3) === 0 || !stream.path) return; // O_RDONLY
    const h = hostPath(abs(stream.path));
    if (h) writePrivate(h, FS.readFile(abs(stream.path)));
  });
  wrap("mkdir", (p) => {
    const h = hostPath(abs(p));
    if (h) fs.mkdirSync(h, { recursive: true });
  });
  wrap("rmdir", (p) => {
    const h = hostPath(abs(p));
    if (h) fs.rmSync(h, { recursive: true, force: true });
  });
  wrap("unlink", (p) => {
    const h = hostPath(abs(p));
    if (h) fs.rmSync(h, { force: true });
  });
  wrap("rename", (a, b) => {
    const ha = hostPath(abs(a));
    const hb = hostPath(abs(b));
    if (ha && hb) fs.renameSync(ha, hb);
    else if (hb) writePrivate(hb, FS.readFile(abs(b)));
    else if (ha) fs.rmSync(ha, { recursive: true, force: true });
  });
}

// ------------------------------------------------------------- the terminal

let termIn;
let termOut;
if (opts.headless) {
  // No terminal: the console goes to stdout, written synchronously (the
  // board's thread may sit in a wait right after), and nothing comes in.
  termIn = null;
  termOut = (b) => {
    for (let o = 0; o < b.length; ) o += fs.writeSync(1, b, o);
  };
} else if (opts.fd === null) {
  termIn = process.stdin;
  termOut = (b) => process.stdout.write(b);
} else {
  const sock = new tty.ReadStream(opts.fd);
  termIn = sock;
  termOut = (b) => sock.write(b);
}
let outBuf = [];
let muted = false;
function emit(bytes) {
  if (!muted) for (const c of bytes) outBuf.push(c);
}
function say(text) {
  emit(Buffer.from(text, "latin1"));
}
function flush() {
  if (outBuf.length) {
    termOut(Buffer.from(outBuf));
    outBuf = [];
  }
}

// What the terminal has sent while Python runs (the event loop is not
// turning then): read straight from the pty (vboard makes it
// non-blocking) into the input queue. Without --fd there is nothing safe to
// read without blocking: input waits for the event loop.
const termChunk = Buffer.alloc(4096);
function readTerminal() {
  if (opts.fd === null || opts.headless) return;
  for (;;) {
    let n = 0;
    try {
      n = fs.readSync(opts.fd, termChunk, 0, termChunk.length, null);
    } catch (e) {
      return; // EAGAIN: nothing more; EIO: nobody on the other side
    }
    if (n <= 0) return;
    for (let k = 0; k < n; k++) queue.push(termChunk[k]);
  }
}

// ---------------------------------------------------------------- the board

const HARD_RESET = 2;
const WDT_RESET = 3;
const SOFT_RESET = 5;
const PWRON_RESET = 1;
const uid = createHash("sha256").update(path.resolve(opts.image)).digest().subarray(0, 6);

let mp = null;
let rawMode = false;
let resetCause = PWRON_RESET;
let softReset = false; // machine.reset_cause() answers SOFT_RESET after one
let pendingReset = 0;
let wdt = null; // { timeout, deadline }
let rtcOffset = 0; // ms between the board's RTC and the host's clock
const SLEEPER = new Int32Array(new SharedArrayBuffer(4)); // time.sleep's Atomics.wait

function jsModule() {
  return {
    partitions: () =>
      table.parts.map((p, i) => [i, p.type, p.subtype, p.addr, p.size, p.label, p.encrypted ? 1 : 0].join(",")).join("\n"),
    read: partRead,
    // Physical bytes and the sidecar, for the flash emulator (esp32.py).
    raw_read: (i, off, n) => flashRead(table.parts[i].addr + off, n).toString("hex"),
    raw_write: (i, off, hex) => {
      const b = Buffer.from(hex, "hex");
      fs.writeSync(flashFd, b, 0, b.length, table.parts[i].addr + off);
    },
    meta_load: (i) => {
      try {
        return fs.readFileSync(sidecar(table.parts[i]), "utf8");
      } catch (e) {
        return "";
      }
    },
    meta_save: (i, text) => writePrivate(sidecar(table.parts[i]), text),
    flash_encryption: () => (opts.encryption ? 1 : 0),
    // --cut-file: when PATH appears, the flash emulator tears its next
    // program/erase (a power cut in the middle of a flash write); checked
    // at every select.poll of a program, so within half a second in the app.
    cut_requested: () => {
      if (!opts.cutFile || !fs.existsSync(opts.cutFile)) return 0;
      try {
        fs.unlinkSync(opts.cutFile);
      } catch (e) {
        /* gone already */
      }
      return 1;
    },
    write: partWrite,
    erase: partErase,
    urandom: (n) => randomBytes(n).toString("hex"),
    reset: (kind) => {
      pendingReset = kind;
    },
    reset_cause: () => (softReset ? SOFT_RESET : resetCause),
    unique_id: () => uid.toString("hex"),
    rtc_get: () => {
      const d = new Date(Date.now() + rtcOffset);
      const wd = (d.getUTCDay() + 6) % 7; // MicroPython: Monday is 0
      return [d.getUTCFullYear(), d.getUTCMonth() + 1, d.getUTCDate(), wd, d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds(), d.getUTCMilliseconds() * 1000].join(",");
    },
    rtc_set: (s) => {
      const f = s.split(",").map((x) => parseInt(x, 10));
      rtcOffset = Date.UTC(f[0], f[1] - 1, f[2], f[4] || 0, f[5] || 0, f[6] || 0) - Date.now();
    },
    // The `vfs` partition's size, and what the files take (4 KiB blocks).
    statvfs: () => {
      const v = table.parts.find((p) => p.type === 1 && (p.label === "vfs" || p.label === "ffat"));
      const blocks = Math.floor((v ? v.size : 0) / SECTOR);
      const used = treeBlocks(FSROOT);
      return [SECTOR, blocks, Math.max(0, blocks - used)].join(",");
    },
    wdt_start: (ms) => {
      const t = Math.max(1, ms | 0);
      wdt = { timeout: t, deadline: Date.now() + t };
    },
    wdt_feed: () => {
      if (wdt) wdt.deadline = Date.now() + wdt.timeout;
    },
    // time.sleep_ms and friends (shims/time.py): wait in slices, serving
    // the terminal (Ctrl-C) and the watchdog between them, as the esp32
    // port's mp_hal_delay_ms does. "" when the time is up, else "!intr" or
    // "!reset".
    sleep: (ms) => {
      const end = Date.now() + Math.max(0, ms);
      for (;;) {
        flush();
        const v = interruptOrWatchdog();
        if (v) return v;
        const left = end - Date.now();
        if (left <= 0) return "";
        Atomics.wait(SLEEPER, 0, 0, Math.min(20, left));
      }
    },
    // cryptolib.aes and hashlib.sha1 (shims/cryptolib.py, hashlib.py):
    // Node's AES (ECB or CBC, no padding) and SHA-1, hex in and out.
    aes: (keyHex, mode, ivHex, dataHex, encrypt) => {
      const key = Buffer.from(keyHex, "hex");
      const algo = `aes-${key.length * 8}-${mode === 1 ? "ecb" : "cbc"}`;
      const iv = mode === 1 ? null : Buffer.from(ivHex, "hex");
      const c = encrypt ? createCipheriv(algo, key, iv) : createDecipheriv(algo, key, iv);
      c.setAutoPadding(false);
      return Buffer.concat([c.update(Buffer.from(dataHex, "hex")), c.final()]).toString("hex");
    },
    sha1: (dataHex) => createHash("sha1").update(Buffer.from(dataHex, "hex")).digest("hex"),
  };
}

function pyError(e) {
  const text = String(e.message || e);
  return text.endsWith("\n") ? text : text + "\n";
}

function readFile(name) {
  try {
    return mp.FS.readFile("/" + name, { encoding: "utf8" });
  } catch (e) {
    return null; // no such file
  }
}

function runCode(src) {
  try {
    mp.runPython(src);
  } catch (e) {
    if (e.type === "PowerCut") {
      // The flash emulator tore a write (an armed cut, --cut-file): the
      // power is gone, and so is this board, as a real one would be.
      flush();
      say(`vboard: power cut during a flash write (${String(e.message || "").trim().split("\n").pop()})\r\n`);
      flush();
      process.exit(137);
    }
    if (e.type !== "SystemExit") say(pyError(e).replace(/\n/g, "\r\n"));
  }
}

function runFile(name) {
  const src = readFile(name);
  if (src !== null) runCode(src);
}

// ------------------------------------------------------- the network (--net)
//
// Sockets: shims/net.mjs (a worker thread owns them; Python's calls block
// in Atomics.wait). While Python waits in select.poll (or a blocking
// recvfrom), the board's thread serves the terminal and the watchdog from
// there: a Ctrl-C on the terminal raises KeyboardInterrupt in the waiting
// program, an unfed watchdog resets the board.
//
// The top-level yield. This port collects garbage only when Python has
// returned to JS, and the firmware app's IKE loop never returns: its heap
// would grow without bound. So while the app runs (qcdapp.APP.state is
// "running": select.py passes gc.mem_alloc() then), a poll after more than
// --yield-kb KiB of allocation since the last collection answers "yield":
// select.py raises SystemExit, which nothing in the app catches, so Python
// unwinds to the top level (ike.device closes its sockets on the way: net.mjs
// parks them). Back in JS the collection runs; then the board calls
// qcdapp.resume(), the call qcdboard diag makes after its Ctrl-C, which
// continues the IKE loop with the same engine (qcdapp.APP.engine) on the same
// sockets. The app also yields at its first poll when it runs from REPL input
// (`mpremote exec "qcdapp.resume()"`, as qcdboard diag does), so that the
// REPL is free and the app runs from the top level, where it can be
// collected: that exec ends as an exec does, and the app goes on.
const APP = 1; // what Python runs now: the app (main.py, resumed by the board)
const REPL = 2; // or REPL input
let context = 0;
let yieldState = 0; // 0, UNWINDING (Python unwinds to the top), RESUMING
let heapBase = 0; // gc.mem_alloc() after the last top-level collection
let yieldHeap = 0; // gc.mem_alloc() when the app yielded
let collections = 0;
let heapLogged = 0; // --gc-log: when the app's heap was last logged
const HEAP_LOG_MS = 30000;
let bootTime = Date.now();
const RESUME_CODE = "import qcdapp\nqcdapp.resume()";
const net = opts.net ? new Net() : null;

function watchdogFired() {
  say("\r\nvboard: task watchdog got triggered, resetting\r\n");
  flush();
}

// Ctrl-C from the terminal, or the watchdog, while Python runs.
function interruptOrWatchdog() {
  readTerminal();
  const k = queue.indexOf(3);
  if (k >= 0) {
    queue.splice(k, 1); // consumed, as by the port's interrupt character
    return "!intr";
  }
  if (wdt && Date.now() > wdt.deadline) {
    wdt = null;
    pendingReset = WDT_RESET;
    watchdogFired();
    return "!reset";
  }
  return null;
}

const netPy = net
  ? netModule(net, {
      flush,
      yieldState: () => yieldState,
      resumed: () => {
        yieldState = 0;
      },
      beforeBlock: (heap) => {
        if (yieldState === UNWINDING) return "!yield"; // something caught it: unwind on
        if (opts.gcLog && heap >= 0 && Date.now() - heapLogged >= HEAP_LOG_MS) {
          heapLogged = Date.now();
          process.stderr.write(`vboard: heap ${heap} bytes allocated at ${Math.round((heapLogged - bootTime) / 1000)} s; process RSS ${process.memoryUsage().rss} bytes\n`);
        }
        const v = interruptOrWatchdog();
        if (v) return v;
        if (heap >= 0 && (context === REPL || heap - heapBase >= opts.yieldKb * 1024)) {
          yieldState = UNWINDING;
          yieldHeap = heap;
          return "!yield";
        }
        return null;
      },
      whileBlocked: () => {
        flush();
        return interruptOrWatchdog();
      },
    })
  : null;

// Python is back at the top level: the collection the port deferred runs
// at the end of this first call (gc.collect() only marks it pending).
function topLevelCollect() {
  mp.runPython("__import__('gc').collect()");
  mp.runPython("_vboard_heap = __import__('gc').mem_alloc()");
  heapBase = mp.globals.get("_vboard_heap");
  mp.runPython("del _vboard_heap");
  collections++;
  if (opts.gcLog) {
    process.stderr.write(`vboard: gc ${collections} at top level: ${yieldHeap} -> ${heapBase} bytes allocated; process RSS ${process.memoryUsage().rss} bytes\n`);
  }
}

// Run the app (code: main.py's source; null: it has just yielded from the
// REPL) through its top-level yields, until it ends or a reset is due.
async function runApp(code) {
  const outer = context;
  try {
    for (;;) {
      if (code !== null) {
        context = APP;
        runCode(code);
        context = outer;
      }
      if (yieldState !== UNWINDING) break;
      topLevelCollect();
      yieldState = RESUMING;
      flush();
      // Let the event loop turn: terminal input, signals, timers.
      await new Promise((resolve) => setImmediate(resolve));
      if (pendingReset) break;
      code = RESUME_CODE;
    }
  } finally {
    context = outer;
    if (yieldState) {
      netPy.dropParked();
      yieldState = 0;
    }
    flush();
  }
}

async function boot(kind) {
  // kind: PWRON_RESET, HARD_RESET, WDT_RESET or SOFT_RESET
  if (kind === SOFT_RESET) {
    softReset = true;
  } else {
    softReset = false;
    resetCause = kind;
    wdt = null;
    rawMode = false;
    table = readPartitionTable();
  }
  pendingReset = 0;
  bootTime = Date.now();
  heapBase = 0;
  heapLogged = bootTime;
  mp = await loadMicroPython({ heapsize: opts.heap, linebuffer: false, stdout: emit, stderr: emit });
  mp.registerJsModule("_vboard", jsModule());
  if (netPy) {
    netPy.reset(); // the old interpreter's sockets are gone with it
    mp.registerJsModule("_vboardnet", netPy);
  }
  loadTree(mp.FS, FSROOT, "/");
  mirror(mp.FS);
  // The esp32, machine and time modules (with --net also socket, select,
  // cryptolib, hashlib), and os.urandom (Node's crypto; the device's comes
  // from the RF noise source), as built-ins would be: imported from a
  // scratch directory that is gone before user code runs.
  mp.FS.mkdir("/tmp/.vboard");
  for (const [m, f] of shims) mp.FS.writeFile(`/tmp/.vboard/${m}.py`, fs.readFileSync(f));
  mp.runPython(
    [
      "import sys, os, binascii, _vboard",
      "sys.path.insert(0, '/tmp/.vboard')",
      ...shims.map(([m]) => `import ${m}`),
      "sys.path.pop(0)",
      "def _urandom(n, unhexlify=binascii.unhexlify, hexrandom=_vboard.urandom):",
      "    return unhexlify(hexrandom(n))",
      "os.urandom = _urandom",
      "import vfs",
      "_root = vfs.mount()[0][0]",
      "vfs.umount('/')",
      "vfs.mount(_vboardfs.BoardFS(_root), '/')",
      "os.chdir('/')",
      `del ${["sys", "os", "binascii", "vfs", "_vboard", "_urandom", "_root", ...shims.map(([m]) => m)].join(", ")}`,
    ].join("\n"),
  );
  for (const [m] of shims) mp.FS.unlink(`/tmp/.vboard/${m}.py`);
  mp.FS.rmdir("/tmp/.vboard");
  if (opts.stock) mp.runPython(STOCK_IMPORT);
  if (table.error) say(`vboard: ${table.error}: esp32.Partition sees no partitions\r\n`);
  runFile("boot.py");
  if (!rawMode && !pendingReset) {
    const main = readFile("main.py");
    if (main !== null) {
      if (net) await runApp(main);
      else runCode(main);
    }
  }
  if (pendingReset || opts.headless) return; // reset due; or no REPL to start
  // The REPL: the banner in friendly mode; back in raw mode after a soft
  // reset from it (pyexec keeps its mode across a soft reset).
  muted = rawMode;
  mp.replInit();
  if (rawMode) mp.replProcessChar(1);
  muted = false;
  if (rawMode) say("raw REPL; CTRL-B to exit\r\n>");
}

let queue = [];
let busy = false;
let rawTail = 0; // how many bytes of "\x05A\x01" have been held back

async function doReset(kind) {
  queue = []; // what was typed before the reset goes nowhere
  rawTail = 0;
  for (;;) {
    if (kind === SOFT_RESET) say("MPY: soft reboot\r\n");
    flush();
    await boot(kind);
    flush();
    // main.py (or boot.py) reset the board, or its watchdog fired.
    if (!pendingReset) return;
    kind = pendingReset;
  }
}

function feed(c) {
  const r = mp.replProcessChar(c);
  // pyexec answers PYEXEC_FORCED_EXIT (0x100) for Ctrl-D on an empty line:
  // the port's main loop then soft-resets.
  return r;
}

async function pump() {
  if (busy) return;
  busy = true;
  try {
    while (queue.length) {
      const c = queue.shift();
      // Raw-paste request "\x05A\x01": answer "R\x00" (not supported).
      const want = [5, 0x41, 1][rawTail];
      if (c === want) {
        rawTail++;
        if (rawTail === 3) {
          rawTail = 0;
          say("R\x00");
        }
        continue;
      }
      if (rawTail) {
        const held = [5, 0x41].slice(0, rawTail);
        rawTail = 0;
        for (const h of held) feed(h);
      }
      if (c === 1) rawMode = true; // Ctrl-A: raw REPL
      else if (c === 2) rawMode = false; // Ctrl-B: friendly REPL
      context = REPL;
      const r = feed(c);
      context = 0;
      if (yieldState === UNWINDING) {
        // The app yielded from REPL input (its SystemExit ended the exec
        // with pyexec's end markers). Put the REPL back to a fresh line, as
        // an exec that ended would leave it, and run the app on from the
        // top level.
        feed(3);
        if (rawMode) say(">");
        flush();
        await runApp(null);
        if (pendingReset) await doReset(pendingReset);
      } else if (pendingReset) {
        await doReset(pendingReset);
      } else if (r !== 0) {
        await doReset(SOFT_RESET);
      }
    }
  } catch (e) {
    process.stderr.write(`vboard: ${e.stack || e}\n`);
  } finally {
    flush();
    busy = false;
  }
}

if (opts.headless) {
  // Power on, run boot.py and main.py with the console on stdout, reset as
  // told (machine.reset, the watchdog); exit 0 when main.py has ended.
  busy = true;
  await doReset(PWRON_RESET);
  // asyncio tasks main.py created (ike.aio, firmware/readings.py): this
  // port's asyncio runs them from JS timers once Python has returned, so
  // the board stays on while its task queue holds any.
  const pending = () => {
    try {
      mp.runPython("import sys\n_vboard_t = sys.modules.get('asyncio')\n_vboard_t = bool(_vboard_t and _vboard_t.core._task_queue.peek())");
      return mp.globals.get("_vboard_t");
    } catch (e) {
      return false;
    }
  };
  while (!pendingReset && pending()) {
    await new Promise((r) => setTimeout(r, 50));
    flush();
  }
  flush();
  process.exit(0);
}

termIn.on("data", (d) => {
  for (const c of d) queue.push(c);
  pump();
});
termIn.on("end", () => process.exit(0));
termIn.on("error", (e) => {
  // EIO: the last holder of the pty's other side went away.
  process.stderr.write(`vboard: terminal: ${e.message}\n`);
  process.exit(0);
});

// Power on. With --net, main.py's app may run from here for as long as the
// board is up: input is queued meanwhile (Ctrl-C reaches the app, see
// interruptOrWatchdog) and the REPL takes the rest once it ends.
busy = true;
await doReset(PWRON_RESET);
busy = false;
pump();

// The watchdog: checked between REPL characters, since Python code runs to
// completion inside one call (and, with --net, while Python waits in poll).
setInterval(async () => {
  if (wdt && Date.now() > wdt.deadline && !busy) {
    busy = true;
    say("\r\nvboard: task watchdog got triggered, resetting\r\n");
    await doReset(WDT_RESET);
    busy = false;
  }
}, 100).unref?.();
