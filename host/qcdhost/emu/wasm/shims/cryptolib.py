# The `cryptolib` module of the qcd virtual board with --net (vboard):
# the esp32 firmware has it (extmod/modcryptolib.c on mbedTLS) and lib/ike
# needs its AES-CBC; the WebAssembly port has none. The cipher is Node's
# (`_vboard.aes`); the object's rules are modcryptolib.c's:
#   aes(key, mode, IV=None)  key of 16 or 32 octets, mode 1 (ECB) or 2 (CBC;
#                            an IV of 16 octets required); ValueError
#                            "key" / "mode" / "IV" otherwise
#   encrypt(in_buf, out_buf=None), decrypt(...)  a multiple of 16 octets
#                            ("blksize % 16"); one object either encrypts or
#                            decrypts ("can't encrypt & decrypt"); CBC state
#                            carries over from call to call; with out_buf the
#                            result goes there and None is returned.
# No MODE_* constants: stock esp32 firmware has none (lib/ike/crypto.py).
import _vboard
from binascii import hexlify, unhexlify

_ECB = 1
_CBC = 2


class aes:
    def __init__(self, key, mode, IV=None):
        if mode not in (_ECB, _CBC):
            raise ValueError("mode")
        key = bytes(key)
        if len(key) not in (16, 32):
            raise ValueError("key")
        if IV is not None:
            IV = bytes(IV)
            if len(IV) != 16:
                raise ValueError("IV")
        elif mode == _CBC:
            raise ValueError("IV")
        self._key = hexlify(key).decode()
        self._mode = mode
        self._iv = IV
        self._dir = None

    def _op(self, encrypt, in_buf, out_buf):
        data = bytes(in_buf)
        if len(data) % 16:
            raise ValueError("blksize % 16")
        if out_buf is not None and len(out_buf) < len(data):
            raise ValueError("output too small")
        if self._dir is None:
            self._dir = encrypt
        elif self._dir != encrypt:
            raise ValueError("can't encrypt & decrypt")
        iv = hexlify(self._iv).decode() if self._mode == _CBC else ""
        out = unhexlify(_vboard.aes(self._key, self._mode, iv, hexlify(data).decode(), 1 if encrypt else 0)) if data else b""
        if self._mode == _CBC and data:
            self._iv = (out if encrypt else data)[-16:]
        if out_buf is None:
            return out
        out_buf[: len(out)] = out
        return None

    def encrypt(self, in_buf, out_buf=None):
        return self._op(True, in_buf, out_buf)

    def decrypt(self, in_buf, out_buf=None):
        return self._op(False, in_buf, out_buf)
