# The `socket` module of the qcd virtual board with --net (vboard):
# UDP over IPv4 on the host's network stack, through qcdhost/emu/wasm/shims/
# net.mjs (`_vboardnet`), with the behaviour of ports/esp32/modsocket.c
# (v1.27) where code can see it:
#   - socket(AF_INET, SOCK_DGRAM) only: no TCP, no IPv6 (OSError otherwise);
#   - new sockets block; settimeout(None | 0 | secs) and setblocking() as on
#     the esp32 port: a timeout waits in 100 ms steps (retries = ms // 100,
#     and retries + 1 steps of 100 ms), then OSError(ETIMEDOUT), or EAGAIN
#     when the timeout was under 100 ms; a non-blocking recvfrom with
#     nothing queued raises OSError(EAGAIN) at once;
#   - sendto((ip, port)) takes a dotted IPv4 string only: a hostname raises
#     ValueError, as the esp32 port's netutils_parse_inet_addr does;
#   - bind and getaddrinfo take a dotted IPv4 string or "" (any address).
#     There is no DNS on the virtual board: a name raises OSError(-202)
#     (lwIP's EAI_FAIL, what the esp32 port raises for a failed lookup);
#   - recvfrom(n) returns (bytes, ("a.b.c.d", port)); a datagram longer than
#     n is cut to n octets and the rest discarded, as lwIP does;
#   - errors are OSError with MicroPython's errno numbers (the errno
#     module's), e.g. errno.EAGAIN, errno.EADDRINUSE, errno.EBADF on a
#     closed socket;
#   - no getsockname (the esp32 port has none either); fileno() is the
#     board's socket number.
# Not here: connect/send/recv on a connected socket, listen/accept,
# makefile/read/write, SO_BROADCAST's effect (accepted, as the option is),
# MSG_PEEK/MSG_DONTWAIT flags.
import errno as _errno

import _vboardnet
from binascii import hexlify, unhexlify

# lwIP's values, as the esp32 port's module has them.
AF_INET = 2
AF_INET6 = 10
SOCK_STREAM = 1
SOCK_DGRAM = 2
SOCK_RAW = 3
IPPROTO_IP = 0
IPPROTO_TCP = 6
IPPROTO_UDP = 17
SOL_SOCKET = 0xFFF
SO_REUSEADDR = 0x0004
SO_BROADCAST = 0x0020
SO_BINDTODEVICE = 0x100B
IP_ADD_MEMBERSHIP = 3
TCP_NODELAY = 1
MSG_PEEK = 0x01
MSG_DONTWAIT = 0x08

_EAI_FAIL = -202
_EAFNOSUPPORT = 97
_EOPNOTSUPP = 95
_EMSGSIZE = 90
_POLL_MS = 100  # ports/esp32/modsocket.c SOCKET_POLL_US
_FOREVER = -1


def _ipv4(host):
    """The dotted IPv4 string `host`, checked, or None."""
    if not isinstance(host, str):
        return None
    parts = host.split(".")
    if len(parts) != 4:
        return None
    for p in parts:
        if not p or len(p) > 3 or not p.isdigit() or int(p) > 255:
            return None
    return ".".join(str(int(p)) for p in parts)


def _port(port):
    if isinstance(port, str):
        if not port.isdigit():
            raise OSError(_EAI_FAIL)
        port = int(port)
    if not isinstance(port, int) or not 0 <= port <= 0xFFFF:
        raise OverflowError("port out of range")
    return port


def _resolve(host):
    # What lwip_getaddrinfo gives the esp32 port, minus DNS.
    if host == "":
        return "0.0.0.0"
    ip = _ipv4(host)
    if ip is None:
        raise OSError(_EAI_FAIL)
    return ip


def getaddrinfo(host, port, af=0, type=0, proto=0, flags=0):
    """[(AF_INET, type, proto, canonname, (ip, port))], as the esp32 port
    returns it (type 0 is given back as SOCK_STREAM)."""
    ip = _resolve(host)
    port = _port(port)
    if type == 0:
        type = SOCK_STREAM
    return [(AF_INET, type, proto, ip, (ip, port))]


def _errcheck(rc):
    if isinstance(rc, str):
        if rc.startswith("-"):
            raise OSError(-int(rc))
        return rc
    if rc < 0:
        raise OSError(-rc)
    return rc


class socket:
    def __init__(self, af=AF_INET, type=SOCK_STREAM, proto=0):
        if af != AF_INET:
            raise OSError(_EAFNOSUPPORT)
        if type != SOCK_DGRAM:
            raise OSError(_EOPNOTSUPP)  # the virtual board has UDP only
        self._id = _errcheck(_vboardnet.socket())
        self._retries = _FOREVER  # new sockets block (esp32: UINT64_MAX)
        self._nonblocking = False

    def __repr__(self):
        return "<socket fd=%d>" % self._id

    def _open(self):
        if self._id < 0:
            raise OSError(_errno.EBADF)
        return self._id

    def fileno(self):
        return self._id

    def setsockopt(self, level, opt, value):
        sid = self._open()
        if opt == SO_REUSEADDR:
            _errcheck(_vboardnet.reuse(sid, 1 if value else 0))
        elif opt in (SO_BROADCAST, SO_BINDTODEVICE):
            pass
        else:
            print("Warning: lwip.setsockopt() option not implemented")

    def bind(self, addr):
        sid = self._open()
        ip = _resolve(addr[0])
        port = _port(addr[1])
        r = _errcheck(_vboardnet.bind(sid, ip, port)).split(",")
        self._id = int(r[0])

    def settimeout(self, t):
        # _socket_settimeout: retries = ms * 1000 / SOCKET_POLL_US; 0 is
        # non-blocking (O_NONBLOCK), None waits forever.
        if t is None:
            self._retries = _FOREVER
            self._nonblocking = False
        else:
            ms = int(t * 1000)
            if ms < 0:
                raise ValueError("timeout must be non-negative")
            self._retries = ms // _POLL_MS
            self._nonblocking = ms == 0

    def setblocking(self, flag):
        self.settimeout(None if flag else 0)

    def _wait(self):
        # ports/esp32/modsocket.c _socket_read_data: retries + 1 waits of
        # 100 ms (forever with no timeout), then ETIMEDOUT, or EAGAIN for a
        # timeout under 100 ms.
        if self._retries == _FOREVER:
            while not _ready(self._id, -1):
                pass
            return
        if _ready(self._id, (self._retries + 1) * _POLL_MS):
            return
        raise OSError(_errno.EAGAIN if self._retries == 0 else _errno.ETIMEDOUT)

    def recvfrom(self, n):
        sid = self._open()
        n = int(n)
        if n < 0:
            raise ValueError("negative buffer size")
        r = _vboardnet.recvfrom(sid, n)
        if r.startswith("-") and -int(r) == _errno.EAGAIN and not self._nonblocking:
            self._wait()
            r = _vboardnet.recvfrom(sid, n)
        f = _errcheck(r).split(",")
        return unhexlify(f[2]), (f[0], int(f[1]))

    def recv(self, n):
        return self.recvfrom(n)[0]

    def sendto(self, data, addr):
        sid = self._open()
        if not isinstance(addr, tuple) or len(addr) != 2:
            raise TypeError("address must be (ip, port)")
        ip = _ipv4(addr[0]) if addr[0] != "" else "0.0.0.0"
        if ip is None:
            raise ValueError("invalid arguments")  # netutils_parse_inet_addr
        port = addr[1]
        if not isinstance(port, int) or not 0 <= port <= 0xFFFF:
            raise OverflowError("port out of range")
        data = bytes(data)
        if len(data) > 65507:
            raise OSError(_EMSGSIZE)
        return _errcheck(_vboardnet.sendto(sid, hexlify(data).decode(), ip, port))

    def close(self):
        if self._id >= 0:
            sid = self._id
            self._id = -1
            _vboardnet.close(sid)

    def __enter__(self):
        return self

    def __exit__(self, *args):
        self.close()


def _ready(sid, timeout):
    # One socket, POLLIN, through the board's poll (Ctrl-C and the board's
    # other duties are served while it waits).
    import select

    return select._wait_one(sid, timeout)
