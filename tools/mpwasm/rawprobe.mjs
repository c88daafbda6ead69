import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";
let outbuf = [];
const mp = await loadMicroPython({ heapsize: 1<<20, linebuffer: false, stdout: (b) => outbuf.push(...b), stderr: (b)=>outbuf.push(...b) });
mp.replInit();
function feed(s) {
  const r = [];
  for (const ch of Buffer.from(s, "latin1")) { const x = mp.replProcessChar(ch); if (x) r.push(x); }
  const o = Buffer.from(outbuf).toString("latin1"); outbuf = [];
  console.log(JSON.stringify(s), "->", JSON.stringify(o), r);
}
feed("\r\x03");
feed("\r\x01");
feed("\x05A\x01");
feed("print(1+1)\x04");
feed("\x04");
feed("import os\x04");
feed("\x02");
feed("1+2\r");
feed("\x04");
