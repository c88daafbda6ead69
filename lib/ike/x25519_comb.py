# X25519's base point (u = 9) by a comb over Ed25519, with its table: a
# module of its own so that a .mpy deploy can leave it off (about 4 KB of
# heap once loaded: the table's integers and this code); frozen into
# firmware it sits in flash. Without it ike.x25519 runs the ladder for the
# base point too, about twice the work (bench: dh). ike.x25519's header
# says what this does and does not promise about side channels.
#
#   slices(kb, every=-1)   generator: the clamped scalar's kb * B, yielding
#                          None between slices, the u-coordinate last

from ike.x25519 import _MASK255, P, _inverse

# The fixed base, u = 9: every IKE_SA_INIT computes one public value, so it
# has its own method, a comb over Ed25519 (RFC 8032 §5.1; the same curve as
# Curve25519 through u = (1 + y) / (1 - y), RFC 7748 §4.1): the scalar's 256
# bits (bit 255 is 0) as 4 rows of 64, column c's 4 bits pick one of 16
# points sum(bit i * 2^(64 i) * B), and each column costs one doubling and
# one addition: 64 of each instead of the ladder's 255 steps (about half its
# cost). The pick reads every table entry and keeps one with a mask made by
# arithmetic ((d ^ j) - 1) >> 4, -1 for the wanted j and 0 for the others, so
# it has no secret branch or index either. Points are extended coordinates
# (X : Y : Z : T), x = X/Z, y = Y/Z, xy = T/Z (Hisil, Wong, Carter, Dawson
# 2008: dbl-2008-hwcd, madd-2008-hwcd-3, complete for a = -1 and Ed25519's d).
# Table entry j is (y + x) | (y - x) << 256 | (2 d x y) << 512, each mod p,
# XOR the identity's entry (1, 1, 0) (so j = 0 is 0 and not scanned); the test
# host_tests/test_ike_x25519.py recomputes it from the base point.
_M256 = (1 << 256) - 1
_ID = 1 | 1 << 256  # the identity (0 : 1 : 1 : 0) as a table entry
TABLE = (
    0x10ee849760f39a57a5e4823422bca673d92617dc33553b615436edfa7885558507cf9d3a33d4ba65270b4898643d42c2cf932dc6fb8c0e192fbc93c6f58c3b8444fd2f9298f81267a5c18434688f8a09fd399f05d140beb39d103905d740913f,
    0x7528da24d6134d45c5e50ae855825beac9435897edae52d669611bfafaa3194c654878cba97cc9fbb1b73bbcdabc06e5548991878faa60f1cd2a65e777d1f5142102fdba2b20d65009207a1d717af1b95397da89e575f51b51138ec78df6b0ff,
    0x2cb98fb862093a15ccc86f2f558c9825fb40627ead0e45919c30dcfc25a458aa26ead8e64813cf2b3e14aad0fe45e44c8793342b66480e600055c585601e59e90975b5970fc12f2fcd1972ec881342f62dd86fc567d31cd7cb75b8b69c8462a5,
    0x3b9721d283d2296c25f01e00068639f5c3e454c074b722f48767eb2d952362ef2b5449e58eb3bbaa2b1e583b0810c5db29b743e8148be884583b04bfacad8ea31304e9e71627d55100c3e53145747299f7ea38548ebda0b85f3a7562eb3dbe46,
    0x31e0501c5703123ddb82a89258524e7ae6e2c6b93caed665eb05bdcc72a919d026a13664d0543d4df551be51c67bb198e71ffd60d0b20ef72118278de3bc674949d76bba7942742edfea3ad4acf4f0f1855225506cd8952929522d3b13a339ef,
    0x1b0348cff8443fe2019124a39f59652120ba10554d6ff2c95a8efbf8d820dbcf4e559a0f0fc5bba4519960d2d321a8283cddbcb13b8d87e315e7053d236a044d727021d35f87530cc169454b0c02eb1b95dcdc0a039c3b5ffe00e8769c12701d,
    0x3eded74f4e539937f5643fb93ff4a6bf7eeeb9f84ad631d5ee303e75f33d09646f34c66d6fd086ef8850b78fc442d65fef786575171a98fc38ef58cc6fd390cb0b598b8e8b849f6dd7bd8096ce34981d0791ffb24307b72793f3cbb43898dc05,
    0x25a077817c98b4b4fc339fde014da69fe253908cdeee61642bf0e6ac3c4a25777da0b8f68d7e7daba7ebf3be95dbd7c697a05cf41b38a436a66dcc9dc80c1ac146115aba1d4dc0b34cd1eb505cdfa8cba2649f30aafda9e8ef782014385675a7,
    0x37ddaa3e260f91b0acb165270143178bc9466b02ddb519b942fd7d23911f9a2145a02890607f15c0d7e67a47b82f4e99815eb0dbcc68df400a8d60180ca2c1f54013f03d6ad351ba4b39e15e0150a74d8b694a1101cfe11efef366d1fd41f185,
    0x5f3082864f141c64af5493171254ad614ec106326d9c3bbad5b619b93a182de74e8593b0bc655462383fea286a29c47790367544ca8afebb3c03eacf71cef8016bb91a497b9b794456b0d29d7b8b13a3ba2a4aa929c4f20d12de114aa3e5638d,
    0x472dfe772ef9eb7c860af5fc03662198d0b8f56bc38871fadf0910051ea5b3ea7c1188539f570886373bb9c898bc21703cde029144000b60cbd28f4e8ae75c49023562378899469d098be61c357e1d1df50eb90fcba951ce7db4939df0fe7dcb,
    0x61d58fdb66c33b8d264faeb35d6aad4da48187f9cc8ca9d2c28e159f6d720629043eedd45e1f4deeb7ba0f59a75d586c0b650d05e2aeb29023e811ad0e6315de173c4fa94f45073e258fdbfd7041f802c651b919f3afd20cf6c147f2c7073216,
    0x7375e405a33f1a70cc71d0aa8fe92315e4806fd933c99d73f3f2db526a67de8e5fcb43ee06225b26a0cae62b17d2407f24b7bc7d92ec0803601a0fbcd45c811e044649f411b2e77397deccba52401c870d8db37605631b75310509b93509fba5,
    0x24b991d53c4dbd351b619ed9e299fcb2a14515cb0e1c845dc40ef00c100f976e6b857c7efcc3e6caae710c171ce56c633d2f7a591263cb458de703b5681d104d09de2bf5dd418acaa751ab1d4733ba417e9fbeac3c400fc479d256b48b2801c1,
    0x16469758fb9a829b04dd055da6b600d076d66cfa5a0afa4bbb2ac2467cbcaf2909952a563bc8ffc25a2ba76f71f8c89a79df5c7560811a8b137eeb6747fbb843409b4adce5c6cf2fd4ebeb1b0664e3a596b5c6fa5f93c226a2a8cb4bdc7ef83d,
)


def slices(kb, every=-1):
    # kb: the clamped scalar (bit 254 set, bits 255 and 0-2 clear); yields
    # None after every slice of every + 1 columns (every = 2^n - 1; -1: no
    # slices), then the u-coordinate of kb * B, B the base point (u = 9).
    m = _MASK255
    p = P
    w = _M256
    tab = TABLE
    X, Y, Z = 0, 1, 1
    for c in range(63, -1, -1):
        if c & every == every:  # public: the column number
            yield None
        # column c: bits c, 64 + c, 128 + c, 192 + c, row i -> digit bit i
        b = 192 + c
        d = (kb[b >> 3] >> (b & 7)) & 1
        b -= 64
        d = d + d | (kb[b >> 3] >> (b & 7)) & 1
        b -= 64
        d = d + d | (kb[b >> 3] >> (b & 7)) & 1
        d = d + d | (kb[c >> 3] >> (c & 7)) & 1
        if c < 63:
            # Q = 2Q (dbl-2008-hwcd with a = -1; signs folded: these are
            # -H, -E, -G, -F, products unchanged)
            a = X * X
            a = (a & m) + 19 * (a >> 255)
            b = Y * Y
            b = (b & m) + 19 * (b >> 255)
            cc = Z * Z
            cc = (cc & m) + 19 * (cc >> 255)
            h = a + b
            e = X + Y
            e = e * e
            e = h - ((e & m) + 19 * (e >> 255))
            g = a - b
            f = cc + cc + g
            X = e * f
            X = (X & m) + 19 * (X >> 255)
            X %= p
            Y = g * h
            Y = (Y & m) + 19 * (Y >> 255)
            Y %= p
            T = e * h
            T = (T & m) + 19 * (T >> 255)
            T %= p
            Z = f * g
            Z = (Z & m) + 19 * (Z >> 255)
            Z %= p
        else:
            T = 0
        # the entry for digit d, every entry read
        q = _ID
        for j in range(1, 16):
            q ^= (((d ^ j) - 1) >> 4) & tab[j - 1]
        # Q = Q + entry (madd-2008-hwcd-3; T3 is not needed: a doubling or
        # the end comes next)
        a = (Y - X) * ((q >> 256) & w)
        a = (a & m) + 19 * (a >> 255)
        b = (Y + X) * (q & w)
        b = (b & m) + 19 * (b >> 255)
        cc = T * (q >> 512)
        cc = (cc & m) + 19 * (cc >> 255)
        z2 = Z + Z
        e = b - a
        f = z2 - cc
        g = z2 + cc
        h = b + a
        X = e * f
        X = (X & m) + 19 * (X >> 255)
        X %= p
        Y = g * h
        Y = (Y & m) + 19 * (Y >> 255)
        Y %= p
        Z = f * g
        Z = (Z & m) + 19 * (Z >> 255)
        Z %= p
    # u = (1 + y) / (1 - y) = (Z + Y) / (Z - Y)
    yield None
    yield (Z + Y) * _inverse((Z - Y) % p) % p


