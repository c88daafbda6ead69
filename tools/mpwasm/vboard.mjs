// The qcd virtual board: the MicroPython WebAssembly port behind a terminal,
// with an ESP32's flash, so mpremote (and the qcd tools built on it) drive it
// as they drive a real board. Started by tools/vboard, which owns the
// pseudo-terminal; this file is the board.
//
//   node tools/mpwasm/vboard.mjs --image FLASH.bin --fs DIR [--fd N]
//                                [--heap BYTES] [--flash-encryption]
//
// --image  a whole-flash image (4 MiB for the qcd boards), as esptool
//          merge-bin writes it: the partition table at 0x8000 is read from
//          it at every boot, as ESP-IDF's esp_partition does, and `esp32.
//          Partition` reads, programs and erases it in place (NOR rules).
// --fs     a host directory that holds the board's filesystem. A real board
//          keeps it in the `vfs` partition (littlefs); the WebAssembly port
//          has only an in-memory filesystem, so its files are loaded from DIR
//          at every boot and every change is written through to DIR.
// --fd     the terminal: a file descriptor (the pty master from tools/vboard);
//          without it, stdin/stdout.
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
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";
import { createHash, randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import tty from "node:tty";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
// Python modules installed at every boot: [name, file]. _flashemu is the
// flash emulator (tools/flashemu.py) the encrypted partitions use.
const SHIMS = [
  ["_flashemu", path.join(HERE, "..", "flashemu.py")],
  ["esp32", path.join(HERE, "vboard", "esp32.py")],
  ["machine", path.join(HERE, "vboard", "machine.py")],
  ["_vboardfs", path.join(HERE, "vboard", "_vboardfs.py")],
].filter(([, f]) => fs.existsSync(f));

function usage(msg) {
  process.stderr.write(`vboard.mjs: ${msg}\nusage: node vboard.mjs --image FLASH.bin --fs DIR [--fd N] [--heap BYTES] [--flash-encryption]\n`);
  process.exit(2);
}

const opts = { heap: 2 * 1024 * 1024, fd: null, image: null, fsdir: null, encryption: false };
{
  const a = process.argv.slice(2);
  while (a.length) {
    const o = a.shift();
    if (o === "--image") opts.image = a.shift();
    else if (o === "--fs") opts.fsdir = a.shift();
    else if (o === "--fd") opts.fd = parseInt(a.shift(), 10);
    else if (o === "--heap") opts.heap = parseInt(a.shift(), 10);
    else if (o === "--flash-encryption") opts.encryption = true;
    else usage(`unknown option ${o}`);
  }
  if (!opts.image) usage("no --image");
  if (!opts.fsdir) usage("no --fs");
  if (!(opts.heap > 0)) usage("--heap wants a number of bytes");
}

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
  usage(`${opts.image} is ${flashSize} bytes: not a whole-flash image (tools/qcdboard image makes one)`);
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

// The flash emulator's sidecar of a partition (tools/flashemu.py keeps one
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
    if (h) fs.writeFileSync(h, FS.readFile(abs(stream.path)));
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
    else if (hb) fs.writeFileSync(hb, FS.readFile(abs(b)));
    else if (ha) fs.rmSync(ha, { recursive: true, force: true });
  });
}

// ------------------------------------------------------------- the terminal

let termIn;
let termOut;
if (opts.fd === null) {
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
    meta_save: (i, text) => fs.writeFileSync(sidecar(table.parts[i]), text),
    flash_encryption: () => (opts.encryption ? 1 : 0),
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
  };
}

function pyError(e) {
  const text = String(e.message || e);
  return text.endsWith("\n") ? text : text + "\n";
}

function runFile(name) {
  let src;
  try {
    src = mp.FS.readFile("/" + name, { encoding: "utf8" });
  } catch (e) {
    return; // no such file
  }
  try {
    mp.runPython(src);
  } catch (e) {
    if (e.type !== "SystemExit") say(pyError(e).replace(/\n/g, "\r\n"));
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
  mp = await loadMicroPython({ heapsize: opts.heap, linebuffer: false, stdout: emit, stderr: emit });
  mp.registerJsModule("_vboard", jsModule());
  loadTree(mp.FS, FSROOT, "/");
  mirror(mp.FS);
  // The esp32 and machine modules, and os.urandom (Node's crypto; the
  // device's comes from the RF noise source), as built-ins would be: imported
  // from a scratch directory that is gone before user code runs.
  mp.FS.mkdir("/tmp/.vboard");
  for (const [m, f] of SHIMS) mp.FS.writeFile(`/tmp/.vboard/${m}.py`, fs.readFileSync(f));
  mp.runPython(
    [
      "import sys, os, binascii, _vboard",
      "sys.path.insert(0, '/tmp/.vboard')",
      ...SHIMS.map(([m]) => `import ${m}`),
      "sys.path.pop(0)",
      "def _urandom(n, unhexlify=binascii.unhexlify, hexrandom=_vboard.urandom):",
      "    return unhexlify(hexrandom(n))",
      "os.urandom = _urandom",
      "import vfs",
      "_root = vfs.mount()[0][0]",
      "vfs.umount('/')",
      "vfs.mount(_vboardfs.BoardFS(_root), '/')",
      "os.chdir('/')",
      `del ${["sys", "os", "binascii", "vfs", "_vboard", "_urandom", "_root", ...SHIMS.map(([m]) => m)].join(", ")}`,
    ].join("\n"),
  );
  for (const [m] of SHIMS) mp.FS.unlink(`/tmp/.vboard/${m}.py`);
  mp.FS.rmdir("/tmp/.vboard");
  if (table.error) say(`vboard: ${table.error}: esp32.Partition sees no partitions\r\n`);
  runFile("boot.py");
  if (!rawMode && !pendingReset) runFile("main.py");
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
  if (kind === SOFT_RESET) say("MPY: soft reboot\r\n");
  flush();
  await boot(kind);
  flush();
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
      const r = feed(c);
      if (pendingReset) {
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

await boot(PWRON_RESET);
flush();

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

// The watchdog: checked between REPL characters, since Python code runs to
// completion inside one call.
setInterval(async () => {
  if (wdt && Date.now() > wdt.deadline && !busy) {
    busy = true;
    say("\r\nvboard: task watchdog got triggered, resetting\r\n");
    await doReset(WDT_RESET);
    busy = false;
  }
}, 100).unref?.();
