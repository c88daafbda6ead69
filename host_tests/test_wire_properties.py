# qcd.wire properties (hypothesis): encode/decode round trips, and the parser
# refusing every truncation and every length corruption of a valid message.
import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from qcd import wire
from qcd.taker import Taker
from qcd.tokens import TOKEN_MAX, TOKEN_MIN, make_token

spi8 = st.binary(min_size=8, max_size=8).filter(lambda b: b != bytes(8))
token = st.binary(min_size=TOKEN_MIN, max_size=TOKEN_MAX)
exchange = st.sampled_from([wire.IKE_AUTH, wire.CREATE_CHILD_SA, wire.INFORMATIONAL, wire.IKE_INTERMEDIATE])
flags = st.sampled_from([0, wire.FLAG_I, wire.FLAG_R, wire.FLAG_I | wire.FLAG_R])
msg_id = st.integers(0, 2**32 - 1)
# Any payload type but SK/SKF (those must be last) and 0 (ends the chain).
ptype = st.integers(1, 255).filter(lambda t: t not in (wire.PT_SK, wire.PT_SKF))
notify = st.tuples(st.integers(0, 65535), st.integers(0, 255), st.binary(max_size=8), st.binary(max_size=64))


@st.composite
def messages(draw, protected=None):
    pl = []
    for ntype, proto, spi, data in draw(st.lists(notify, max_size=4)):
        pl.append((wire.PT_N, wire.notify_body(ntype, data, proto, spi)))
    for t, body in draw(st.lists(st.tuples(ptype.filter(lambda t: t != wire.PT_N), st.binary(max_size=40)), max_size=3)):
        pl.insert(draw(st.integers(0, len(pl))), (t, body))
    if protected if protected is not None else draw(st.booleans()):
        pl.append((wire.PT_SK, draw(st.binary(min_size=wire.SK_MIN_BODY, max_size=80))))
    return wire.build(draw(spi8), draw(spi8), draw(exchange), draw(flags), draw(msg_id), pl)


@st.composite
def answers(draw):
    # Tokens as a maker makes them: HMAC outputs, pseudo-random whatever
    # secret and SPIs hypothesis draws. (Arbitrary token bytes, say all
    # zeros, can spell a payload header, so a shortened or lengthened
    # Length field could then yield another well-formed chain: the test
    # below covers that case; here the answer is one a maker really sends.)
    secret = draw(st.binary(min_size=32, max_size=32))
    n = draw(st.integers(1, 3))
    toks = [make_token(secret + bytes([k]), b"spi-i-%d" % k, b"spi-r-00") for k in range(n)]
    if draw(st.booleans()):
        req = wire.parse(wire.build(draw(spi8), draw(spi8), draw(exchange), draw(flags), draw(msg_id), [(wire.PT_SK, bytes(16))]))
        return wire.answer_invalid_ike_spi(req, toks, draw(st.integers(0, 255)))
    return wire.answer_invalid_spi(draw(st.binary(min_size=4, max_size=4)), draw(spi8), draw(spi8), draw(st.booleans()), toks)


def payload_offsets(buf):
    """Offsets of every generic payload header in a message that parses."""
    m = wire.parse(buf)
    return [start - wire.GEN_LEN for _t, _c, start, _e in m.payloads]


@given(spi8, spi8, exchange, flags, msg_id, st.lists(notify, max_size=5))
def test_notify_round_trip(spi_i, spi_r, ex, fl, mid, ns):
    pl = [(wire.PT_N, wire.notify_body(t, d, p, s)) for t, p, s, d in ns]
    m = wire.parse(wire.build(spi_i, spi_r, ex, fl, mid, pl))
    assert (m.spi_i, m.spi_r, m.exchange, m.flags, m.msg_id) == (spi_i, spi_r, ex, fl, mid)
    assert m.notifies() == [(t, p, s, d) for t, p, s, d in ns]


@given(messages())
def test_build_parse_build_is_identity(buf):
    m = wire.parse(buf)
    assert m is not None
    pl = [(t, bytes(buf[s:e])) for t, _c, s, e in m.payloads]
    assert wire.build(m.spi_i, m.spi_r, m.exchange, m.flags, m.msg_id, pl) == buf


@given(messages(), st.data())
def test_every_truncation_is_refused(buf, data):
    n = data.draw(st.integers(0, len(buf) - 1))
    assert wire.parse(buf[:n]) is None
    # Even with the header's Length rewritten to match the truncation.
    if n >= wire.HDR_LEN:
        cut = bytearray(buf[:n])
        struct.pack_into(">I", cut, 24, n)
        # A cut at a payload boundary leaves the previous payload's Next
        # Payload naming a payload that is not there.
        assert wire.parse(bytes(cut)) is None


@given(messages(), st.integers(0, 2**32 - 1))
def test_header_length_corruption_is_refused(buf, length):
    if length == len(buf):
        return
    bad = bytearray(buf)
    struct.pack_into(">I", bad, 24, length)
    assert wire.parse(bytes(bad)) is None


@given(answers(), st.data())
def test_payload_length_corruption_of_an_answer_is_refused_or_a_merge(buf, data):
    # The §4.5/§8.2 answers are what a taker parses on the unprotected path.
    # A rewritten payload Length is refused, with one exception the IKE
    # framing cannot tell from a valid message: a Length that spans exactly
    # this payload and the next ones whole (their headers become body bytes
    # and the chain goes on from the last one's Next Payload). Such a merge
    # never forges a verdict: a taker holding the first token deletes only if
    # that exact token still arrives as an N(QCD) of its own.
    m0 = wire.parse(buf)
    offs = payload_offsets(buf)
    lens = [e - s + wire.GEN_LEN for _t, _c, s, e in m0.payloads]
    k = data.draw(st.integers(0, len(offs) - 1))
    old = lens[k]
    new = data.draw(st.integers(0, 65535).filter(lambda v: v != old))
    bad = bytearray(buf)
    struct.pack_into(">H", bad, offs[k] + 2, new)
    m = wire.parse(bytes(bad))
    if m is None:
        return
    merges = [sum(lens[k:j]) for j in range(k + 2, len(lens) + 1)]
    assert new in merges, (k, old, new, lens)
    first = [n[3] for n in m0.notifies() if n[0] == wire.QUICK_CRASH_DETECTION][0]
    taker = Taker()
    taker.learn(m0.spi_i, m0.spi_r, [(wire.QUICK_CRASH_DETECTION, 1, first)])
    intact = any(n[0] == wire.QUICK_CRASH_DETECTION and n[3] == first for n in m.notifies() or [])
    kept_invalid = any(n[0] in (wire.INVALID_IKE_SPI, wire.INVALID_SPI) for n in m.notifies() or [])
    assert taker.judge(wire.parse(bytes(bad))) == (intact and kept_invalid)


@settings(max_examples=300)
@given(st.one_of(messages(), answers()), st.data())
def test_any_length_corruption_parses_consistently_or_not_at_all(buf, data):
    # For arbitrary messages a shorter payload length may expose a body that
    # happens to look like payload headers; whatever parses must still tile
    # the datagram exactly with in-bounds payloads.
    offs = payload_offsets(buf)
    if not offs:
        return
    off = data.draw(st.sampled_from(offs))
    bad = bytearray(buf)
    struct.pack_into(">H", bad, off + 2, data.draw(st.integers(0, 65535)))
    m = wire.parse(bytes(bad))
    if m is None:
        return
    pos = wire.HDR_LEN
    for _t, _c, start, end in m.payloads:
        assert start == pos + wire.GEN_LEN and start <= end <= len(bad)
        pos = end
    assert pos == len(bad)
    ns = m.notifies()
    if ns is not None:
        for _t, _p, spi, d in ns:
            assert len(spi) + len(d) <= len(bad)


@given(answers())
def test_answers_are_unprotected_and_carry_their_tokens(buf):
    m = wire.parse(buf)
    assert not m.is_protected()
    ns = m.notifies()
    assert ns[0][0] in (wire.INVALID_IKE_SPI, wire.INVALID_SPI)
    assert all(n[0] == wire.QUICK_CRASH_DETECTION and TOKEN_MIN <= len(n[3]) <= TOKEN_MAX for n in ns[1:])
