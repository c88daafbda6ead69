// Run a Python file on real MicroPython: the WebAssembly port
// (@micropython/micropython-webassembly-pyscript) under Node.js.
//
//   node host/qcdhost/emu/wasm/run.mjs [--path HOSTDIR:MPDIR]... [--heap BYTES]
//                             FILE.py [ARGS...]
//
// --path copies a host directory tree into MicroPython's in-memory filesystem
// (the port has MEMFS only, no host mounts); /lib is on sys.path, so
// `--path lib/qcd:/lib/qcd` makes `import qcd` work. sys.argv is FILE, ARGS.
// The port has no os.urandom; a JS module `jsrandom` (Node's crypto) is
// registered so portable code can inject randomness: jsrandom.bytes(n)
// returns a list of n ints. Nor has it cryptolib or hashlib.sha1: `jscrypto`
// (below) supplies AES-CBC and SHA-1 for lib/ike's tests.
// Garbage collection: this port cannot scan the C stack, so gc.collect()
// inside a running script only marks a collection as pending; it happens
// when control is back at the top level (ports/webassembly/main.c). A long
// script therefore grows the heap until it ends. To give it top-level
// points, a script appends callables to the global list `_mpwasm_steps`
// (created empty before the script runs); each is then called from the top
// level in turn, after the script body, and a pending collection runs before
// each. Steps may append more steps.
// Exit status: 0 when the script finished, 1 on an uncaught exception (its
// traceback on stderr), or the code given to sys.exit().
import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";
import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";

function usage(msg) {
  process.stderr.write(`run.mjs: ${msg}\nusage: node run.mjs [--path HOSTDIR:MPDIR]... [--heap BYTES] FILE.py [ARGS...]\n`);
  process.exit(2);
}

const args = process.argv.slice(2);
const paths = [];
let heapsize = 4 * 1024 * 1024;
while (args.length && args[0].startsWith("--")) {
  const opt = args.shift();
  if (opt === "--path") {
    const v = args.shift();
    if (!v || !v.includes(":")) usage("--path wants HOSTDIR:MPDIR");
    const i = v.lastIndexOf(":");
    paths.push([v.slice(0, i), v.slice(i + 1)]);
  } else if (opt === "--heap") {
    heapsize = parseInt(args.shift(), 10);
    if (!(heapsize > 0)) usage("--heap wants a number of bytes");
  } else usage(`unknown option ${opt}`);
}
const file = args.shift();
if (!file) usage("no FILE.py given");
let source;
try {
  source = fs.readFileSync(file, "utf8");
} catch (e) {
  usage(`cannot read ${file}: ${e.message}`);
}

const out = (s) => process.stdout.write(s);
const err = (s) => process.stderr.write(s);
const mp = await loadMicroPython({ heapsize, linebuffer: false, stdout: out, stderr: err });

function mkdirs(dir) {
  let cur = "";
  for (const part of dir.split("/").filter(Boolean)) {
    cur += "/" + part;
    try {
      mp.FS.mkdir(cur);
    } catch (e) {
      /* exists */
    }
  }
}
function copyTree(host, dest) {
  const st = fs.statSync(host);
  if (st.isDirectory()) {
    mkdirs(dest);
    for (const name of fs.readdirSync(host)) {
      if (name === "__pycache__" || name.startsWith(".")) continue;
      copyTree(path.join(host, name), dest + "/" + name);
    }
  } else {
    mkdirs(path.posix.dirname(dest));
    mp.FS.writeFile(dest, fs.readFileSync(host));
  }
}
for (const [host, dest] of paths) {
  try {
    copyTree(host, dest);
  } catch (e) {
    usage(`cannot copy ${host}: ${e.message}`);
  }
}
mp.registerJsModule("jsrandom", { bytes: (n) => Array.from(randomBytes(n)) });
// The port has no cryptolib and its hashlib no sha1: `jscrypto` gives both
// from Node's crypto, hex in and hex out (what crosses the JS proxy
// cleanly), so lib/ike's crypto adapter can be completed in tests with
// ike.crypto.install(). Firmware has cryptolib and hashlib.sha1 itself.
mp.registerJsModule("jscrypto", {
  aes_cbc: (keyHex, ivHex, dataHex, encrypt) => {
    const key = Buffer.from(keyHex, "hex");
    const algo = `aes-${key.length * 8}-cbc`;
    const c = encrypt ? createCipheriv(algo, key, Buffer.from(ivHex, "hex")) : createDecipheriv(algo, key, Buffer.from(ivHex, "hex"));
    c.setAutoPadding(false);
    return Buffer.concat([c.update(Buffer.from(dataHex, "hex")), c.final()]).toString("hex");
  },
  sha1: (dataHex) => createHash("sha1").update(Buffer.from(dataHex, "hex")).digest("hex"),
});

const argv = [file, ...args].map((a) => JSON.stringify(a)).join(", ");
let code = 0;
try {
  mp.runPython(`import sys\nsys.argv[:] = [${argv}]\n_mpwasm_steps = []\n`);
  mp.runPython(source);
  const pending = () => {
    mp.runPython("_mpwasm_n = len(_mpwasm_steps)");
    return mp.globals.get("_mpwasm_n");
  };
  for (let i = 0; pending() > i; i++) {
    mp.runPython(`_mpwasm_steps[${i}]()`);
  }
} catch (e) {
  const text = String(e.message || e);
  const m = text.match(/SystemExit: (-?\d+)/);
  if (m) code = parseInt(m[1], 10);
  else if (/SystemExit\s*$/.test(text.trim())) code = 0;
  else {
    err(text.endsWith("\n") ? text : text + "\n");
    code = 1;
  }
}
process.exit(code);
