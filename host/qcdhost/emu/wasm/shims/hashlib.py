# The `hashlib` module of the qcd virtual board with --net (vboard):
# the port's own (imported as `uhashlib`: sha256) plus sha1, which the esp32
# firmware has (mbedTLS) and lib/ike uses for NAT detection (RFC 7296
# §2.23); the WebAssembly port lacks it. The digest is Node's
# (`_vboard.sha1`); the object behaves as the built-in ones: update() and
# digest() until digest() finalises it ("hash is final" after that).
import _vboard
import uhashlib
from binascii import hexlify, unhexlify

sha256 = uhashlib.sha256


class sha1:
    digest_size = 20
    block_size = 64

    def __init__(self, data=None):
        self._buf = bytearray()
        self._final = False
        if data is not None:
            self.update(data)

    def update(self, data):
        if self._final:
            raise ValueError("hash is final")
        self._buf.extend(data)

    def digest(self):
        if self._final:
            raise ValueError("hash is final")
        self._final = True
        return unhexlify(_vboard.sha1(hexlify(self._buf).decode()))
