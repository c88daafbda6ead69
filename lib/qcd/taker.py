# The token taker (RFC 6290 §3, §4.2-4.5, §8.2): the side that keeps state.
#
# It stores the token its peer handed over for each IKE SA, and when an
# unprotected N(INVALID_IKE_SPI) or N(INVALID_SPI) arrives with N(QCD), it
# compares. A match means the peer rebooted and regenerated the token: delete
# the IKE SA and its Child SAs now. A mismatch, or no token, changes nothing
# but a counter (§3 step 4: "log and otherwise ignore").

from qcd import wire
from qcd.tokens import TOKEN_MAX, TOKEN_MIN, ct_equal, token_digest

# One table entry: SPI-I (8) | SPI-R (8) | SHA-256 of the token (32).
# The taker keeps a digest, not the token: fixed-size entries whatever the
# peer's token length (16..128), and a memory dump shows no usable token.
# Verification hashes the candidate and compares digests in constant time;
# finding another token with the same SHA-256 is a second preimage.
_KEY = 16
_ENTRY = 48
_MIN_CAP = 4

COUNTER_NAMES = (
    "stored",  # first token for an IKE SA (§4.2, §4.3)
    "replaced",  # a later token for the same SA (§4.4)
    "forgotten",  # SA deleted or rekeyed away
    "refused_bad_length",  # N(QCD) outside 16..128 octets: never stored
    "verified",  # unprotected token matched: verdict delete (the token goes with the SA)
    "mismatch",  # unprotected token did not match: ignored (§3)
    "no_token",  # known SA, but its peer never handed us a token
    "unknown_sa",  # unprotected QCD for SPIs nobody here holds
    "ignored_no_qcd",  # unprotected message without INVALID_*SPI + QCD
    "ignored_malformed",  # could not be parsed
    "ignored_protected",  # protected message on the unprotected path
    "refused_address",  # restrict_to_peer: token came from another address
)


class Taker:
    """Token taker logic, sans-I/O.

    restrict_to_peer: RFC 6290 §3 says a taker MUST accept tokens from any
    address (cluster members and backup gateways answer for each other); set
    this to accept them only from the SA's peer address, as Rockhopper does.
    """

    def __init__(self, restrict_to_peer=False):
        self.restrict_to_peer = restrict_to_peer
        self._tab = bytearray(_MIN_CAP * _ENTRY)
        self._n = 0
        self.counters = {}
        for name in COUNTER_NAMES:
            self.counters[name] = 0

    def __len__(self):
        return self._n

    # -- the table ------------------------------------------------------------

    def _find(self, key):
        tab = self._tab
        end = self._n * _ENTRY
        i = tab.find(key)
        while 0 <= i < end:
            if i % _ENTRY == 0:
                return i
            i = tab.find(key, i + 1)
        return -1

    def _resize(self, cap):
        new = bytearray(cap * _ENTRY)
        used = self._n * _ENTRY
        new[0:used] = memoryview(self._tab)[0:used]
        self._tab = new

    def has(self, spi_i, spi_r):
        return self._find(spi_i + spi_r) >= 0

    def store(self, spi_i, spi_r, token):
        """Keep (a digest of) the peer's token for IKE SA (spi_i, spi_r).

        A token outside the RFC 6290 §4.1 bounds is refused and never stored.
        """
        if not TOKEN_MIN <= len(token) <= TOKEN_MAX:
            self.counters["refused_bad_length"] += 1
            return False
        key = spi_i + spi_r
        dig = token_digest(token)
        i = self._find(key)
        if i >= 0:
            self._tab[i + _KEY : i + _ENTRY] = dig
            self.counters["replaced"] += 1
            return True
        if (self._n + 1) * _ENTRY > len(self._tab):
            self._resize(2 * (len(self._tab) // _ENTRY))
        i = self._n * _ENTRY
        self._tab[i : i + _KEY] = key
        self._tab[i + _KEY : i + _ENTRY] = dig
        self._n += 1
        self.counters["stored"] += 1
        return True

    def forget(self, spi_i, spi_r):
        i = self._find(spi_i + spi_r)
        if i < 0:
            return False
        self._remove(i)
        self.counters["forgotten"] += 1
        return True

    def _remove(self, i):
        last = (self._n - 1) * _ENTRY
        tab = self._tab
        if i != last:
            tab[i : i + _ENTRY] = tab[last : last + _ENTRY]
        tab[last : last + _ENTRY] = bytes(_ENTRY)  # leave no digest behind
        self._n -= 1
        cap = len(tab) // _ENTRY
        if cap > _MIN_CAP and self._n * 4 <= cap:
            self._resize(cap // 2)

    def _matches(self, i, tokens):
        hit = False
        want = bytes(self._tab[i + _KEY : i + _ENTRY])
        for t in tokens:
            # Every candidate is hashed and compared; no early exit that
            # would tell which one matched.
            if ct_equal(token_digest(t), want):
                hit = True
        return hit

    # -- the protocol ---------------------------------------------------------

    def learn(self, spi_i, spi_r, notifies):
        """A protected, authenticated message for IKE SA (spi_i, spi_r) carried
        these notifies ((type, proto, spi, data) or (type, proto, data)).

        The first N(QCD) with a token of legal length is stored, replacing any
        earlier one (RFC 6290 §4.4). Protocol ID is ignored (RFC 7296 §3.10).
        A QCD notify here never deletes anything. Returns "stored",
        "replaced", or None when no token was kept.
        """
        for n in notifies:
            if n[0] == wire.QUICK_CRASH_DETECTION:
                had = self._find(spi_i + spi_r) >= 0
                if self.store(spi_i, spi_r, n[-1]):
                    return "replaced" if had else "stored"
        return None

    @staticmethod
    def qcd_tokens(m):
        """From a parsed unprotected message: the QCD tokens, if the message
        carries N(INVALID_IKE_SPI) or N(INVALID_SPI) and at least one N(QCD)
        of legal length; otherwise None."""
        ns = m.notifies()
        if ns is None:
            return None
        invalid = False
        toks = []
        for ntype, _proto, _spi, data in ns:
            if ntype == wire.INVALID_IKE_SPI or ntype == wire.INVALID_SPI:
                invalid = True
            elif ntype == wire.QUICK_CRASH_DETECTION and TOKEN_MIN <= len(data) <= TOKEN_MAX:
                toks.append(data)
        if not invalid or not toks:
            return None
        return toks

    def judge(self, m, src_ip=None, peer_ip=None):
        """Judge an unprotected message for an IKE SA we hold. True: delete
        the SA. `m` is the message as qcd.wire.parse returned it (None:
        malformed).

        Only an unprotected message carrying N(INVALID_IKE_SPI) or
        N(INVALID_SPI) together with a matching N(QCD) gives True (RFC 6290
        §3 step 4, §8.2); the SA is named by the header's SPIs (for §8.2 the
        maker puts the parent IKE SA's SPIs there). Everything else: False and
        a counter. Judging changes no token: the token goes when the SA ends
        (forget, from the engine's ike_down).
        """
        if m is None:
            self.counters["ignored_malformed"] += 1
            return False
        if m.is_protected():
            self.counters["ignored_protected"] += 1
            return False
        toks = self.qcd_tokens(m)
        if toks is None:
            self.counters["ignored_no_qcd"] += 1
            return False
        i = self._find(m.spi_i + m.spi_r)
        if i < 0:
            self.counters["no_token"] += 1
            return False
        if self.restrict_to_peer and peer_ip is not None and src_ip != peer_ip:
            self.counters["refused_address"] += 1
            return False
        if not self._matches(i, toks):
            self.counters["mismatch"] += 1
            return False
        self.counters["verified"] += 1
        return True

    def unknown(self, m):
        """An unprotected message for SPIs nobody here holds: True (and
        counted) when it carries a QCD token, which is logged and otherwise
        ignored (§3)."""
        if m is None or m.is_protected() or self.qcd_tokens(m) is None:
            return False
        self.counters["unknown_sa"] += 1
        return True
