# Fuzzing the hook's unauthenticated entry points (design principle 5):
# unknown_ike_spi, unprotected and unknown_esp_spi fed generated and mutated
# datagrams. Properties: nothing raises (internal_errors stays 0); nothing
# unprotected or malformed is answered; only a real token deletes an SA; no
# state changes on a refusal. QCD_FUZZ_N sets the number of datagrams
# (default 100000 in `make test`; `make fuzz` runs 2 million). The seed is
# printed so a failure can be replayed with QCD_FUZZ_SEED.
import os
import random

from portable_util import SA
from qcd import hook, wire
from qcdhost.keys import MemoryKeys
from qcd.tokens import ip_bytes, make_token

N = int(os.environ.get("QCD_FUZZ_N", "100000"))
SEED = int(os.environ.get("QCD_FUZZ_SEED", str(random.randrange(1 << 32))))

SECRET = bytes(range(32))
SPI_I, SPI_R = bytes.fromhex("1111111111111111"), bytes.fromhex("2222222222222222")
CHILD = 0xC0DE0001
PEER = ("192.0.2.1", 500)
DEV = ("192.0.2.2", 500)
TOKEN = make_token(SECRET, SPI_I, SPI_R)


def seeds():
    req = wire.build(SPI_I, SPI_R, wire.INFORMATIONAL, wire.FLAG_I, 5, [(wire.PT_SK, bytes(range(48)))])
    m = wire.parse(req)
    return [
        req,
        wire.build(SPI_I, SPI_R, wire.IKE_SA_INIT, wire.FLAG_I, 0, [(wire.PT_SA, bytes(40)), (wire.PT_KE, bytes(64))]),
        wire.build(SPI_I, SPI_R, wire.CREATE_CHILD_SA, 0, 9, [(wire.PT_SKF, b"\x00\x01\x00\x02" + bytes(32))]),
        wire.answer_invalid_ike_spi(m, [TOKEN, bytes(32)]),
        wire.answer_invalid_spi(CHILD.to_bytes(4, "big"), SPI_I, SPI_R, True, [TOKEN]),
        wire.build(SPI_I, SPI_R, wire.INFORMATIONAL, wire.FLAG_R, 5, [(wire.PT_N, wire.notify_body(wire.QUICK_CRASH_DETECTION, TOKEN, 1))]),
        CHILD.to_bytes(4, "big") + bytes(range(60)),
    ]


def mutate(rng, data):
    b = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(8)
        if op == 0 and b:  # bit flip
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1 and b:  # random byte
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op == 2:  # truncate
            del b[rng.randrange(len(b) + 1) :]
        elif op == 3:  # insert
            i = rng.randrange(len(b) + 1)
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9)))
        elif op == 4 and len(b) >= 28:  # rewrite the header Length
            b[24:28] = rng.choice([0, len(b), len(b) + 1, len(b) - 1, rng.randrange(1 << 32)]).to_bytes(4, "big")
        elif op == 5 and len(b) > 32:  # rewrite a payload Length somewhere
            i = rng.randrange(28, len(b) - 3)
            b[i + 2 : i + 4] = rng.randrange(65536).to_bytes(2, "big")
        elif op == 6 and len(b) > 20:  # rewrite exchange type / flags
            b[rng.choice([16, 18, 19])] = rng.randrange(256)
        elif op == 7:  # splice with another seed
            other = rng.choice(seeds())
            i = rng.randrange(len(b) + 1)
            b[i:] = other[rng.randrange(len(other) + 1) :]
    return bytes(b)


def generated(rng):
    kind = rng.randrange(3)
    if kind == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 120)))
    pl = []
    for _ in range(rng.randrange(0, 5)):
        t = rng.choice([wire.PT_N, wire.PT_N, wire.PT_V, wire.PT_D, rng.randrange(256)])
        if t == wire.PT_N:
            body = wire.notify_body(rng.choice([4, 11, 16419, 16384, rng.randrange(65536)]), bytes(rng.randrange(256) for _ in range(rng.choice([0, 15, 16, 32, 128, 129]))), rng.randrange(256))
        else:
            body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 20)))
        pl.append((t, body))
    if kind == 2:
        pl.append((rng.choice([wire.PT_SK, wire.PT_SKF]), bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))))
    spis = rng.choice([(SPI_I, SPI_R), (SPI_I, bytes(8)), (bytes(8), bytes(8)), (bytes(rng.randrange(256) for _ in range(8)), SPI_R)])
    return wire.build(spis[0], spis[1], rng.randrange(256), rng.randrange(256), rng.randrange(1 << 32), pl)


def expected_ike_answer(data):
    m = wire.parse(data)
    return (
        m is not None
        and m.is_protected()
        and not m.flags & wire.FLAG_R
        and m.exchange in (35, 36, 37, 43)
        and m.spi_r != bytes(8)
    )


def legit_qcd(data):
    """Would a correct taker delete SPI_I/SPI_R on this? (the oracle)"""
    m = wire.parse(data)
    if m is None or m.is_protected() or (m.spi_i, m.spi_r) != (SPI_I, SPI_R):
        return False
    ns = m.notifies()
    if ns is None:
        return False
    return any(n[0] in (4, 11) for n in ns) and any(n[0] == 16419 and n[3] == TOKEN for n in ns)


def test_fuzz_unauthenticated_entry_points():
    rng = random.Random(SEED)
    print("QCD_FUZZ_SEED=%d QCD_FUZZ_N=%d" % (SEED, N))
    keys = MemoryKeys([SECRET])
    keys.child_put(CHILD, SPI_I, SPI_R, True, ip_bytes(PEER[0]))
    maker = hook.QcdHook(hook.MAKER, keys, rate=None)
    taker = hook.QcdHook(hook.TAKER)
    sa = SA(SPI_I, SPI_R, False, DEV)
    taker.ike_up(sa, [(wire.QUICK_CRASH_DETECTION, 1, TOKEN)], [], 0)
    corpus = seeds()
    answered = deleted = 0
    for i in range(N):
        data = generated(rng) if rng.random() < 0.3 else mutate(rng, rng.choice(corpus))
        a = maker.unknown_ike_spi(data, PEER, i)
        if a is not None:
            assert expected_ike_answer(data), data.hex()
            m = wire.parse(a)
            assert m is not None and not m.is_protected() and m.flags & wire.FLAG_R
            answered += 1
        e = maker.unknown_esp_spi(data, PEER, i)
        if e is not None:
            assert data[:4] == CHILD.to_bytes(4, "big") and len(data) >= 8, data.hex()
        verdict = taker.unprotected(data, PEER, sa, i)
        assert verdict == legit_qcd(data), data.hex()
        # Judging changes no state, whatever the verdict (the engine's
        # ike_down removes the token with the SA).
        assert taker.taker.has(SPI_I, SPI_R)
        if verdict:
            deleted += 1
        taker.unknown_ike_spi(data, PEER, i)
    assert maker.internal_errors == 0 and taker.internal_errors == 0
    assert len(taker.taker) == 1 and keys.child_count() == 1
    # The fuzzer must have reached the answering and deleting paths too, or
    # it only proved that garbage is refused.
    assert answered > N // 1000 and deleted > N // 10000, (answered, deleted)
    print("answered=%d deleted=%d of %d" % (answered, deleted, N))
