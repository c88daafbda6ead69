# The crypto adapter: every primitive the engine uses, behind five functions.
#
#   aes_cbc_encrypt(key, iv, data) / aes_cbc_decrypt(key, iv, data)
#   aes_cbc_encrypt_into(key, iv, buf, start, end)   buf[start:end] in place
#   hmac_sha256(key, data)    one-shot HMAC-SHA-256
#   hmac_key(key)             the same key for many MACs: .digest(data)
#   x25519(k, u), x25519_base(k)   RFC 7748 X25519 (D-H group 31)
#   prepare(rng, groups, keep), ready(rng), take(rng)
#                             X25519 key pairs made ahead in idle time
#   sha1(data), sha256(data)
#   random_bytes(n)
#   ct_equal(a, b)            constant-time comparison of MACs
#
# Backends, chosen at import:
#   MicroPython  cryptolib.aes(key, 2, iv) (mode 2 = CBC: the MODE_* names
#                are absent on stock firmware), hashlib, os.urandom, and
#                ike.x25519 (hand-written: no EC on MicroPython)
#   CPython      the `cryptography` package for AES and X25519, the standard
#                library for the rest
# HMAC is ikebase.hmac256 on both (padded key blocks computed once per key;
# its header says why it is not micropython-lib's hmac, which stock ESP32
# firmware does not have anyway). No AES is written by hand here. Where a
# backend lacks a primitive (the WebAssembly MicroPython has no cryptolib,
# no os.urandom and no sha1), a caller installs one with install(); until
# then using it raises CryptoUnavailable, which the engine turns into "no
# answer".
#
# Traps (micropython-esp32-reference.md §6, §9): built-in hash objects are
# single-use (digest() finalises) and cannot be copied, so every MAC feeds
# fresh sha256 objects (ikebase.hmac256); an AES object either encrypts or
# decrypts, and CBC state carries over between calls, so every operation
# builds its own object; data must be a multiple of 16 octets (callers pad,
# RFC 7296 §3.14 and RFC 4303 §2.4).

import gc
import hashlib

from ikebase.hmac256 import HmacKey as hmac_key  # noqa: F401
from ikebase.hmac256 import ct_equal  # noqa: F401
from ikebase.hmac256 import hmac_sha256  # noqa: F401


class CryptoUnavailable(Exception):
    pass


_aes_cbc = None  # f(key, iv, data, encrypt) -> bytes
_aes_cbc_in_place = None  # f(key, iv, writable buffer): encrypts it over itself
_sha1 = None  # f(data) -> 20 bytes
_random = None  # f(n) -> n bytes
_x25519 = None  # f(k, u) -> 32 bytes, or None for the all-zero result

try:
    import cryptolib  # MicroPython

    # cryptolib takes any buffer (a memoryview slice too: no copy) and,
    # given an output buffer, writes there; "in_buf and out_buf can also
    # refer to the same mutable buffer, in which case data is encrypted
    # in-place" (docs/library/cryptolib.rst).
    def _aes_cbc_cryptolib(key, iv, data, encrypt):
        c = cryptolib.aes(bytes(key), 2, bytes(iv))
        return c.encrypt(data) if encrypt else c.decrypt(data)

    def _aes_cbc_in_place_cryptolib(key, iv, buf):
        cryptolib.aes(bytes(key), 2, bytes(iv)).encrypt(buf, buf)

    _aes_cbc = _aes_cbc_cryptolib
    _aes_cbc_in_place = _aes_cbc_in_place_cryptolib
except ImportError:
    try:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes  # CPython

        def _aes_cbc_cryptography(key, iv, data, encrypt):
            c = Cipher(algorithms.AES(bytes(key)), modes.CBC(bytes(iv)))
            op = c.encryptor() if encrypt else c.decryptor()
            return op.update(bytes(data)) + op.finalize()

        _aes_cbc = _aes_cbc_cryptography
    except ImportError:
        pass

try:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey  # CPython

    def _x25519_cryptography(k, u):
        try:
            return X25519PrivateKey.from_private_bytes(bytes(k)).exchange(X25519PublicKey.from_public_bytes(bytes(u)))
        except ValueError:  # OpenSSL refuses the all-zero shared secret
            return None

    _x25519 = _x25519_cryptography
except ImportError:
    pass

if hasattr(hashlib, "sha1"):

    def _sha1_hashlib(data):
        return hashlib.sha1(bytes(data)).digest()

    _sha1 = _sha1_hashlib

try:
    from os import urandom as _urandom

    _random = _urandom
except ImportError:
    pass


def install(aes_cbc=None, sha1=None, random=None, x25519=None):
    """Supply a primitive the platform lacks (tests on the WebAssembly port),
    or another backend (x25519: f(k, u) -> 32 bytes or None)."""
    global _aes_cbc, _aes_cbc_in_place, _sha1, _random, _x25519
    if x25519 is not None:
        _x25519 = x25519
    if aes_cbc is not None:
        _aes_cbc = aes_cbc
        _aes_cbc_in_place = None  # the new backend's output is copied back
    if sha1 is not None:
        _sha1 = sha1
    if random is not None:
        _random = random


def available():
    """Names of the primitives that are still missing (empty when complete)."""
    out = []
    if _aes_cbc is None:
        out.append("aes_cbc")
    if _sha1 is None:
        out.append("sha1")
    if _random is None:
        out.append("random")
    return out


def aes_cbc_encrypt(key, iv, data):
    if _aes_cbc is None:
        raise CryptoUnavailable("no AES-CBC backend")
    return _aes_cbc(key, iv, data, True)


def aes_cbc_encrypt_into(key, iv, buf, start, end):
    """Encrypt buf[start:end] (a bytearray; a multiple of 16 octets) where
    it is: with cryptolib no second buffer is made (a protected message is
    built in one, ike.message.build_sk); other backends' output is copied
    back."""
    mv = memoryview(buf)[start:end]
    if _aes_cbc_in_place is not None:
        _aes_cbc_in_place(key, iv, mv)
    else:
        buf[start:end] = aes_cbc_encrypt(key, iv, mv)


def aes_cbc_decrypt(key, iv, data):
    if _aes_cbc is None:
        raise CryptoUnavailable("no AES-CBC backend")
    return _aes_cbc(key, iv, data, False)


def _x25519_ladder(k, u):
    # Loaded on first use: a device configured for MODP only never pays for it.
    from ike.x25519 import x25519

    return x25519(k, u)


def x25519(k, u):
    """X25519(k, u) (RFC 7748 §5), 32 octets; None when it is all zero (a
    low-order u: RFC 7748 §6.1, RFC 8031 §2.2 "MUST check ... and abort")."""
    z = (_x25519 or _x25519_ladder)(k, u)
    if z is None or z == bytes(32):
        return None
    return z


_BASE = b"\x09" + bytes(31)  # RFC 7748 §4.1: u = 9


def x25519_base(k):
    """The public value X25519(k, 9) for the private scalar k."""
    return (_x25519 or _x25519_ladder)(k, _BASE)


def sha256(data):
    return hashlib.sha256(bytes(data)).digest()


def sha1(data):
    if _sha1 is None:
        raise CryptoUnavailable("no SHA-1 backend")
    return _sha1(data)


def random_bytes(n):
    if _random is None:
        raise CryptoUnavailable("no random source")
    return bytes(_random(n))


# X25519 key pairs made ahead of need (issue 10: a handshake's time). They,
# and the one being made, live here because this module stays loaded: the
# engine may unload ike.dh, ike.x25519 and ike.x25519_comb between
# handshakes (a pair being made holds its own references to the code it
# runs, so that can happen mid-way too).
#
#   prepare(rng=None, groups=None, keep=1) -> bool
#       idle-time work: one slice towards the next X25519 key pair (on the
#       C3 stand-in at most about 2 M instructions: bench c3), True if it
#       did one (call again when still idle), False if there was nothing to
#       do: `keep` pairs are ready, groups (a config's dh_groups) has no
#       group 31, or making one ran out of memory (then nothing more until a
#       pair is taken). No free-heap check before it starts: the esp32 and
#       WebAssembly ports grow their heaps on demand, so gc.mem_free() does
#       not say whether there is room.
#       ike.device's loop and ike.aio's task call it when nothing is due.
#   ready(rng=None) -> how many pairs are ready for that rng
#   take(rng) -> (private, public) made with that rng, or None
#
# ike.dh.KeyPair(31, rng) takes one (each pair once, RFC 7296 §2.12: never
# reused; the one being made is finished first), else makes one then: so
# does the first IKE_SA_INIT after boot, when the loop has not been idle.
# A pair's randomness is drawn when its making starts; the private value
# waits in RAM until it is used, as it does during an exchange. keep=2 is
# for two engines in one process (tests, bench): each takes one.
_ahead = []  # [(rng, private, public)], oldest first
_job = []  # [rng, private, generator of public values in slices]
_stalled = []  # [1] after a MemoryError, until a pair is taken


def x25519_base_slices(k):
    """x25519_base(k) in slices: an iterator of None between slices and the
    public value last (the hand-written X25519 cuts its work up; another
    backend does it in one call)."""
    if _x25519 is None:
        from ike.x25519 import public_key_slices

        return public_key_slices(k)
    return iter((_x25519(k, _BASE),))


def ready(rng=None):
    rng = rng or random_bytes
    return len([1 for r in _ahead if r[0] is rng])


def prepare(rng=None, groups=None, keep=1):
    """One slice of idle-time work towards the next X25519 key pair: True
    if it did one, False if there was nothing to do."""
    if groups is not None and 31 not in groups:  # 31: Curve25519 (RFC 8031)
        return False
    rng = rng or random_bytes
    if not _job:
        if _stalled or ready(rng) >= keep:
            return False
        x = bytes(rng(32))
        _job[:] = [rng, x, None]
    try:
        if _job[2] is None:
            _job[2] = x25519_base_slices(_job[1])
        pub = next(_job[2])
    except MemoryError:
        # quietly: idle work must not be what fails in a small heap
        del _job[:]
        _stalled[:] = [1]
        gc.collect()
        return False
    except BaseException:  # KeyboardInterrupt: start afresh next time
        del _job[:]
        raise
    if pub is not None:
        _ahead.append((_job[0], _job[1], pub))
        del _job[:]
    return True


def take(rng):
    """(private, public): a ready pair of this rng's, or the one being made
    with it, finished now; None if there is neither."""
    del _stalled[:]  # a pair was wanted: the idle work may try again
    for i in range(len(_ahead)):
        if _ahead[i][0] is rng:
            r = _ahead.pop(i)
            return r[1], r[2]
    if _job and _job[0] is rng:
        rng, x, slices = _job
        del _job[:]
        if slices is None:
            slices = x25519_base_slices(x)
        for pub in slices:
            if pub is not None:
                return x, pub
    return None
