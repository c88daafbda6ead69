# ike.message and ike.payloads: round trips of every payload body, SK
# protection, robustness against malformed input, and cross-checks with
# scapy's IKEv2 layer (an independent decoder and encoder).
import hashlib
import hmac
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.contrib.ikev2 import IKEv2, IKEv2_Nonce, IKEv2_Notify, IKEv2_Proposal, IKEv2_SA, IKEv2_Transform

from ike import crypto, message, payloads, proposals
from ike.const import (
    ATTR_KEY_LENGTH,
    IKE_SA_INIT,
    INFORMATIONAL,
    MODP_2048,
    PROTO_ESP,
    PROTO_IKE,
    PT_D,
    PT_IDI,
    PT_N,
    PT_NONCE,
    PT_SA,
    PT_SK,
    TS_IPV4_ADDR_RANGE,
)

u8 = st.integers(0, 255)
u16 = st.integers(0, 65535)
transform = st.tuples(st.integers(1, 5), u16, st.one_of(st.none(), u16))
proposal = st.tuples(st.integers(1, 255), st.sampled_from([PROTO_IKE, PROTO_ESP]), st.sampled_from([b"", b"\x01\x02\x03\x04", b"12345678"]), st.lists(transform, min_size=1, max_size=8))
selector = st.tuples(st.just(TS_IPV4_ADDR_RANGE), u8, u16, u16, st.binary(min_size=4, max_size=4), st.binary(min_size=4, max_size=4))


@given(st.lists(proposal, min_size=1, max_size=4))
def test_sa_payload_round_trip(props):
    assert payloads.decode_sa(payloads.encode_sa(props)) == props


@given(st.lists(selector, min_size=1, max_size=8))
def test_traffic_selector_round_trip(sels):
    assert payloads.decode_ts(payloads.encode_ts(sels)) == sels


@given(u16, u8, st.binary(max_size=8), st.binary(max_size=64))
def test_notify_round_trip(ntype, proto, spi, data):
    assert payloads.decode_notify(payloads.encode_notify(ntype, data, proto, spi)) == (ntype, proto, spi, data)


@given(st.sampled_from([PROTO_IKE, PROTO_ESP]), st.lists(st.binary(min_size=4, max_size=4), max_size=10))
def test_delete_round_trip(proto, spis):
    if proto == PROTO_IKE:
        spis = []
    assert payloads.decode_delete(payloads.encode_delete(proto, spis)) == (proto, spis)


def test_ke_id_auth_round_trip():
    assert payloads.decode_ke(payloads.encode_ke(14, b"k" * 256)) == (14, b"k" * 256)
    assert payloads.decode_typed(payloads.encode_typed(2, b"dev.example")) == (2, b"dev.example")


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_payload_decoders_never_raise(b):
    for f in (payloads.decode_sa, payloads.decode_ts, payloads.decode_notify, payloads.decode_delete, payloads.decode_ke, payloads.decode_typed):
        f(b)


def test_truncated_sa_payloads_are_refused():
    body = payloads.encode_sa(proposals.ike_offer([MODP_2048]))
    for n in range(len(body)):
        assert payloads.decode_sa(body[:n]) is None


def test_unknown_transform_attribute_makes_the_transform_unusable():
    # §3.3.6: a transform with an attribute we do not understand is rejected
    body = bytearray(payloads.encode_sa([(1, PROTO_IKE, b"", [(1, 12, 256)])]))
    body[-4] = 0x80
    body[-3] = 99  # attribute type 99 instead of Key Length (14)
    props = payloads.decode_sa(bytes(body))
    assert props[0][3][0][2] == -1
    assert proposals.choose_ike(props, [MODP_2048]) is None


# -- messages ------------------------------------------------------------------


def _sample():
    pls = [(PT_SA, payloads.encode_sa(proposals.ike_offer([MODP_2048]))), (PT_NONCE, b"n" * 32), (PT_N, payloads.encode_notify(16388, b"h" * 20))]
    return message.build(b"I" * 8, bytes(8), IKE_SA_INIT, 0x08, 0, pls)


def test_built_message_decodes_with_scapy():
    data = _sample()
    x = IKEv2(data)
    assert x.init_SPI == b"I" * 8 and x.exch_type == IKE_SA_INIT and x.length == len(data)
    assert x[IKEv2_SA].prop.trans_nb == 4
    assert x[IKEv2_Transform].transform_id == 12 and x[IKEv2_Transform].key_length == 256
    assert bytes(x[IKEv2_Nonce].nonce) == b"n" * 32
    assert x[IKEv2_Notify].type == 16388


def test_scapy_built_proposal_decodes_and_is_chosen():
    t = (
        IKEv2_Transform(transform_type=1, transform_id=12, length=12, key_length=256)
        / IKEv2_Transform(transform_type=2, transform_id=5)
        / IKEv2_Transform(transform_type=3, transform_id=12)
        / IKEv2_Transform(transform_type=4, transform_id=14)
    )
    sa = IKEv2_SA(prop=IKEv2_Proposal(proposal=1, proto=1, trans_nb=4, trans=t))
    body = bytes(sa)[4:]
    props = payloads.decode_sa(body)
    assert props == [(1, PROTO_IKE, b"", [(1, 12, 256), (2, 5, None), (3, 12, None), (4, 14, None)])]
    assert proposals.choose_ike(props, [MODP_2048]) == (1, b"", MODP_2048)
    assert ATTR_KEY_LENGTH == 14


def test_parse_refuses_every_truncation_and_extension():
    data = _sample()
    assert message.parse(data) is not None
    for n in range(len(data)):
        assert message.parse(data[:n]) is None
    assert message.parse(data + b"\x00") is None


@settings(max_examples=500)
@given(st.binary(max_size=120))
def test_parse_never_raises(b):
    message.parse(b)
    message.parse(_sample()[:28] + b)


def test_sk_round_trip_and_tamper_detection():
    ek, ik = os.urandom(32), os.urandom(32)
    inner = [(PT_IDI, payloads.encode_typed(2, b"dev.example")), (PT_D, payloads.encode_delete(PROTO_ESP, [b"\x00\x00\x01\x00"]))]
    data = message.build_sk(b"I" * 8, b"R" * 8, INFORMATIONAL, 0x08, 3, inner, ek, ik, os.urandom(16))
    m = message.parse(data)
    assert m.is_protected() and m.msg_id == 3 and m.payloads[-1][0] == PT_SK
    got = message.decrypt_sk(m, ek, ik)
    assert [(t, b) for t, _c, b in got] == inner
    assert IKEv2(data).length == len(data)
    # any flipped bit, anywhere, is refused (the ICV covers header to ciphertext)
    for i in range(0, len(data), 7):
        bad = bytearray(data)
        bad[i] ^= 0x01
        bm = message.parse(bytes(bad))
        assert bm is None or message.decrypt_sk(bm, ek, ik) is None
    assert message.decrypt_sk(m, ek, os.urandom(32)) is None


def test_sk_with_the_sas_hmac_key_is_the_same_message_as_with_the_key_bytes():
    # The engine passes the IKE SA's crypto.hmac_key (made once per SA,
    # keymat.IkeKeys.mac_ai / mac_ar); tools and tests pass key bytes.
    ek, ik, iv = os.urandom(32), os.urandom(32), os.urandom(16)
    mac = crypto.hmac_key(ik)
    inner = [(PT_N, payloads.encode_notify(16419, b"token"))]
    data = message.build_sk(b"I" * 8, b"R" * 8, INFORMATIONAL, 0x08, 1, inner, ek, mac, iv)
    assert data == message.build_sk(b"I" * 8, b"R" * 8, INFORMATIONAL, 0x08, 1, inner, ek, ik, iv)
    # the ICV, computed independently: HMAC-SHA-256-128 over header to ciphertext
    assert data[-16:] == hmac.new(ik, data[:-16], hashlib.sha256).digest()[:16]
    for _ in range(3):  # the same key object for message after message
        m = message.parse(data)
        assert [(t, b) for t, _c, b in message.decrypt_sk(m, ek, mac)] == inner
    assert message.decrypt_sk(message.parse(data), ek, crypto.hmac_key(os.urandom(32))) is None


@pytest.mark.parametrize("n_inner", [0, 1, 15, 16, 17, 31])
def test_sk_padding_for_every_length(n_inner):
    ek, ik = os.urandom(32), os.urandom(32)
    inner = [(PT_N, payloads.encode_notify(16419, b"t" * n_inner))] if n_inner else []
    m = message.parse(message.build_sk(b"I" * 8, b"R" * 8, INFORMATIONAL, 0, 0, inner, ek, ik, os.urandom(16)))
    assert [(t, b) for t, _c, b in message.decrypt_sk(m, ek, ik)] == inner


def _sk_oracle(spi_i, spi_r, exchange, flags, msg_id, inner, ek, ik, iv):
    """RFC 7296 §3.14 written out with `cryptography` and `hmac`: HDR | SK
    generic header | IV | AES-CBC(chain | zero padding | Pad Length) | ICV."""
    import struct

    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    chain = b""
    for i, (t, body) in enumerate(inner):
        nxt = inner[i + 1][0] if i + 1 < len(inner) else 0
        chain += struct.pack(">BBH", nxt, 0, 4 + len(body)) + body
    pad = (16 - (len(chain) + 1) % 16) % 16
    enc = Cipher(algorithms.AES(ek), modes.CBC(iv)).encryptor()
    ct = enc.update(chain + bytes(pad) + bytes((pad,))) + enc.finalize()
    sk_len = 4 + 16 + len(ct) + 16
    head = spi_i + spi_r + struct.pack(">BBBBII", PT_SK, 0x20, exchange, flags, msg_id, 28 + sk_len)
    signed = head + struct.pack(">BBH", inner[0][0] if inner else 0, 0, sk_len) + iv + ct
    return signed + hmac.new(ik, signed, hashlib.sha256).digest()[:16]


def _in_place_aes(key, iv, view):
    # a backend that, like cryptolib given out_buf = in_buf, writes the
    # ciphertext over its input through the view it is handed
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    enc = Cipher(algorithms.AES(bytes(key)), modes.CBC(bytes(iv))).encryptor()
    view[:] = enc.update(bytes(view)) + enc.finalize()


@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("sizes", [(), (0,), (1,), (11,), (12,), (27,), (3, 400), (32, 64, 5)])
def test_sk_built_in_one_buffer_is_byte_for_byte_rfc_7296s_message(sizes, in_place, monkeypatch):
    # build_sk writes the chain where its ciphertext goes and encrypts it
    # there (in place with cryptolib, copied back otherwise): the message on
    # the wire is the one the RFC's concatenation gives
    if in_place:
        monkeypatch.setattr(crypto, "_aes_cbc_in_place", _in_place_aes)
    ek, ik, iv = os.urandom(32), os.urandom(32), os.urandom(16)
    inner = [(PT_N if i % 2 else PT_IDI, os.urandom(n)) for i, n in enumerate(sizes)]
    data = message.build_sk(b"I" * 8, b"R" * 8, INFORMATIONAL, 0x20, 7, inner, ek, ik, iv)
    assert bytes(data) == _sk_oracle(b"I" * 8, b"R" * 8, INFORMATIONAL, 0x20, 7, inner, ek, ik, iv)
    assert [(t, b) for t, _c, b in message.decrypt_sk(message.parse(bytes(data)), ek, ik)] == inner


def test_sk_payload_not_last_is_malformed():
    data = bytearray(message.build(b"I" * 8, b"R" * 8, INFORMATIONAL, 0, 0, [(PT_SK, b"x" * 48), (PT_N, payloads.encode_notify(1))]))
    assert message.parse(bytes(data)) is None
