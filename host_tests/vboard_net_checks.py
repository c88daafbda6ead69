# Runs ON the virtual board with --net, as its main.py (test_vboard_net.py
# puts it there): the socket, select, cryptolib and hashlib shims against
# what the esp32 port does. One "CHECK name value" line per behaviour; the
# host side asserts on them. /peer_port is a host UDP socket that answers
# every datagram with b"pong-and-more"; /busy_port a host port bound without
# SO_REUSEADDR.
import errno
import io
import select
import socket
import time

import cryptolib
import hashlib
from binascii import hexlify, unhexlify


def check(name, value):
    print("CHECK %s %r" % (name, value))


def err(f):
    try:
        f()
    except Exception as e:
        return (type(e).__name__, e.args[0] if e.args else None)
    return None


def timed(f):
    t = time.ticks_ms()
    e = err(f)
    return e, time.ticks_diff(time.ticks_ms(), t)


peer = int(open("/peer_port").read())
busy = int(open("/busy_port").read())

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(socket.getaddrinfo("127.0.0.1", 0)[0][-1])

# Empty socket: non-blocking EAGAIN at once; a timeout under 100 ms waits
# one 100 ms step then EAGAIN; 250 ms is 2 steps, waited 3 times, ETIMEDOUT.
s.setblocking(False)
e, dt = timed(lambda: s.recvfrom(64))
check("eagain", (e == ("OSError", errno.EAGAIN), dt < 1000))
s.settimeout(0.05)
e, dt = timed(lambda: s.recvfrom(64))
check("short_timeout", (e == ("OSError", errno.EAGAIN), dt >= 90))
s.settimeout(0.25)
e, dt = timed(lambda: s.recvfrom(64))
check("timeout", (e == ("OSError", errno.ETIMEDOUT), dt >= 290))
s.setblocking(False)

p = select.poll()
p.register(s, select.POLLIN)
t = time.ticks_ms()
r = p.poll(300)
check("poll_timeout", (r, time.ticks_diff(time.ticks_ms(), t) >= 290))

# Addresses: dotted IPv4 only.
check("sendto_hostname", err(lambda: s.sendto(b"x", ("localhost", peer))))
check("sendto_short_ip", err(lambda: s.sendto(b"x", ("127.0.1", peer))))
check("sendto_too_big", err(lambda: s.sendto(bytes(65508), ("127.0.0.1", peer))))
check("sendto_port_0", err(lambda: s.sendto(b"x", ("127.0.0.1", 0))) == ("OSError", errno.EINVAL))
check("getaddrinfo", socket.getaddrinfo("127.0.0.1", 500))
check("getaddrinfo_name", err(lambda: socket.getaddrinfo("gw.example", 500)))
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
check("bind_name", err(lambda: u.bind(("localhost", 0))))
check("addr_in_use", err(lambda: u.bind(("127.0.0.1", busy))) == ("OSError", errno.EADDRINUSE))
u.close()
check("tcp", err(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM)))

# A datagram to the host and its answer: the sender's address, the answer
# cut to the buffer (the rest is gone).
check("sent", s.sendto(b"ping", ("127.0.0.1", peer)))
check("poll_in", [(o is s, ev) for o, ev in p.poll(10000)])
data, addr = s.recvfrom(4)
check("recv", (data, addr == ("127.0.0.1", peer)))
check("rest_discarded", err(lambda: s.recvfrom(64)) == ("OSError", errno.EAGAIN))

# POLLOUT; one-shot ipoll; modify, unregister.
p.modify(s, select.POLLIN | select.POLLOUT)
check("pollout", [(o is s, ev) for o, ev in p.poll(0)])
p.modify(s, select.POLLIN)
s.sendto(b"ping", ("127.0.0.1", peer))
first = [(o is s, ev) for o, ev in p.ipoll(10000, 1)]
masked = p.poll(0)
p.modify(s, select.POLLIN)
check("ipoll_oneshot", (first, masked, [(o is s, ev) for o, ev in p.poll(0)]))
p.unregister(s)
check("unregistered", p.poll(0))
check("modify_unknown", err(lambda: p.modify(s, select.POLLIN)) == ("OSError", errno.ENOENT))

# A closed socket.
s.close()
check("closed_recv", err(lambda: s.recvfrom(1)) == ("OSError", errno.EBADF))
p.register(s, select.POLLIN)
check("closed_poll", [(o is s, ev) for o, ev in p.poll(0)])


# The port's own poll still serves other streams (here an io.IOBase that
# says it is readable), next to a board socket.
class Readable(io.IOBase):
    def ioctl(self, req, arg):
        return arg & select.POLLIN if req == 3 else 0  # MP_STREAM_POLL


obj = Readable()
v = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
v.bind(("127.0.0.1", 0))
q = select.poll()
q.register(obj, select.POLLIN)
q.register(v, select.POLLIN)
check("builtin_poll", [(o is obj, ev) for o, ev in q.poll(1000)])
q.unregister(obj)
t = time.ticks_ms()
check("builtin_poll_timeout", (q.poll(200), time.ticks_diff(time.ticks_ms(), t) >= 190))
v.close()

# cryptolib (NIST SP 800-38A F.1.1, F.2.1: CBC state carried between calls)
# and hashlib.sha1 (FIPS 180-2 "abc").
key = unhexlify("2b7e151628aed2a6abf7158809cf4f3c")
iv = unhexlify("000102030405060708090a0b0c0d0e0f")
p1 = unhexlify("6bc1bee22e409f96e93d7e117393172a")
p2 = unhexlify("ae2d8a571e03ac9c9eb76fac45af8e51")
c = cryptolib.aes(key, 2, iv)
check("aes_cbc", hexlify(c.encrypt(p1) + c.encrypt(p2)).decode())
check("aes_cbc_one_way", err(lambda: c.decrypt(p1)))
d = cryptolib.aes(key, 2, iv)
check("aes_cbc_decrypt", d.decrypt(unhexlify("7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2")) == p1 + p2)
check("aes_ecb", hexlify(cryptolib.aes(key, 1).encrypt(p1)).decode())
check("aes_bad", (err(lambda: cryptolib.aes(key[:15], 2, iv)), err(lambda: cryptolib.aes(key, 2)), err(lambda: cryptolib.aes(key, 1).encrypt(b"x"))))
h = hashlib.sha1(b"a")
h.update(b"bc")
check("sha1", hexlify(h.digest()).decode())
check("sha1_final", err(lambda: h.digest()))
check("sha256", hexlify(hashlib.sha256(b"abc").digest()).decode()[:16])
print("DONE")
