# X25519's base point (u = 9) by a comb over Ed25519, with its table: a
# module of its own so that a .mpy deploy can leave it off (its table's
# integers and this code are about 6 KB of heap once loaded); frozen into
# firmware it sits in flash. Without it ike.x25519 runs the ladder for the
# base point too, about 2.4 times the work (bench: dh); with ike.dh's key
# pairs made ahead in idle time that work is off the handshake's path.
# ike.x25519's header says what this does and does not promise about side
# channels.
#
#   slices(kb, every=-1)   generator: kb * B for the clamped scalar kb, B
#                          the base point; yields None between slices (of
#                          every + 1 columns, every = 2^n - 1; -1: none) and
#                          the u-coordinate last
#
# The method: a signed comb (Hamburg 2012, "Fast and compact elliptic-curve
# cryptography", §4; Lim and Lee 1994 for the blocks) over Ed25519 (RFC 8032
# §5.1: the same curve as Curve25519 through u = (1 + y) / (1 - y), RFC 7748
# §4.1), whose base point B has the prime order l, so only k mod l matters.
# The scalar is recoded as K = (k + 2^260 - 1) / 2 mod l, then
# k = sum over the 260 bits of K of s_i 2^i with every s_i = 2 bit_i - 1,
# +1 or -1: no digit is 0. The 260 positions are 10 rows of 26, in two
# blocks of 5 rows; column c of a block is 5 signs, whose point
# sum(s_r 2^(26 r) B) is +-(one of 16 table entries): the entry its four
# lower signs name, relative to the top sign, negated when the top sign is
# -1. 25 doublings and 52 additions in all (the unsigned comb it replaces:
# 63 and 64), each addition reading all 16 entries of its block in the same
# order and keeping the one its digit names with an arithmetic mask
# ((d ^ j) - 1) >> 4, -1 for the wanted j and 0 for the others: no secret
# branch or index. The negation is arithmetic too: Q + (-E) = -((-Q) + E),
# and -(X : Y : Z : T) = (-X : Y : Z : -T), so the point kept is the true
# one or its negative (x -> (x ^ m) - m with m = 0 or -1 before each
# addition, by the sign the point carries and the one it needs); y, and so
# u, is the same for both. Points are extended coordinates (X : Y : Z : T),
# x = X/Z, y = Y/Z, xy = T/Z (Hisil, Wong, Carter, Dawson 2008:
# dbl-2008-hwcd, madd-2008-hwcd-3, complete for a = -1 and Ed25519's d).
# TABLE[16 b + j], block b, j = 0..15: the point
# 2^(130 b) (2^104 B + sum over r < 4 of (2 bit_r(j) - 1) 2^(26 r) B) as
# (y + x) | (y - x) << 256 | (2 d x y) << 512, each mod p; the test
# host_tests/test_ike_x25519.py recomputes it from the base point with
# affine Edwards arithmetic.

from ike.x25519 import _MASK255, P, _inverse_slices

L = (1 << 252) + 27742317777372353535851937790883648493  # the order of B (RFC 8032 §5.1)
_HALF = (L + 1) // 2  # 1/2 mod l
_BIAS = (1 << 260) - 1
_M256 = (1 << 256) - 1
TABLE = (
    0x566adbe55176c1810725103b3b6ad30b88dc6553c7a07fa0b9696e018118f83a269605c6d24393bdc921f756f61a4455cacf17e4e0e0e5c4a41f229da72b00ec6d500c5d5e8956f9113488c71f7a486e5468a1b0941cb87c6ad0e12f13a013ee,
    0x5bd3df5a6f4e614ed213ef0325f42e4152beb603a23ab085e241f11c06c181f0697c3a18aca253a136b34b65a5d8193b85b52b77fd4956936d375e1d870c5bbd3204d289db8271e5d9e349f919892cc15f022eb0a2014dc6dafeac7184ac4409,
    0x6faccdd52db44eb1af57b6002a4ea75c527a9a6ccd3a60cda73cec10910c04c353d19453f05859eb0464c5d2e15ee6f6460762bf667c67ba6ebc75812d305c06464f6e372eebd8814f30d7801334a4a22b0a4665be623a680da46642c4e3b8b5,
    0x3c97c5eab0ea30f3f7fdc5c3554b26f692cf85b96ff6285164ed3aa7238a9d6d723fe9db1daf0fbb5c0f7fa69e80e8a71b0275302a1621cb67f6f298d95734f722d70ee5e3de797689a4a524a8bc743f39f55e5689a548960f82ef5f7700ccdb,
    0x440511e8846387acc935821f07b86705e9eb120933864c6fd280237f96273e261a4f051033552d92e0219899deb29e0405b2e565eccd9d8277d672af0c2972bc364e33b7ed37b6964104402e9c0a6cff420de2533a6cd6d99e1657f4b09fc3b0,
    0x142d74ed5f18f35bb0ca3ba1f75e4572b9889611f518b7680619f78a8184cefc7d41482c9d67a47235f01c6accfbdd4465097f335974f4fff91fcdf9c3cc0ee365e9c3548adc9f86c1b1f5ba0cb4e92688638e0806c6dcb026bbd7121fea1a42,
    0x516f844fb26cfd8681e98d5947dc623632d3d34671fe0b415450729533beae400364dc74e611bbdfd3180b148f504e419141f051672ae02922dd45afdfac91166d4a04a0be409211911e879fbf4d8638a946356800ae6936d6bb241c27867d01,
    0x6cf22ed753bb0deb7fc25941666f55fb0ed4af9dcb38e91b52e90514de51e3ea64f67f859e24a968bb6fa0e501e1417fe17b1622f49150aa329e19859d4777dd0f069320e19832bd4e20203cc9a19e3b502cfe386325fdc448eec7c31ef28753,
    0x33fcd5c9a8c23d4fd46f914fc7f6b03e504e6657f037205fae475148fb4087ad54a777b9c7e3341fe0feeea22b1be816e89bb05e6b501ebb2a32459c0c5df7dd6cb531b5c7a6fe5eaf77fec653a32dd6148e913521c13e57f3103836f81acab6,
    0x46b7710bfbd67226c4a370234566f5edd00d99481ba0837394297f85b82dab3e6763f51b779a503d8a3199d1e9515a6afc4202cb9a0711ef89f80deb257ac8d85df6888d68080d056d7ebcfe5dbb0e5f46c7fa6676fd6132e7b2c838e85aa4fa,
    0x680302abba3953f6be50fe3ff788f40dc3ba51a48781a00c2baeda5067f189785f9eae63ecbcc24f5e18b12157803c235d56d817f30a5434a38d747c2dd6e25724a65919e7a7d9c11d6fde76bca944f34878cf40dd28388b8d1e72b7e6ebd210,
    0x5805244d4700b4684374e9813150e156db7a4a40fa5265a45fe9080b74159db871ac4308ca2a2e64290aae189e44b09123ea85c485f8c0bc3a9c69e925d7c5593428d43f3156ee3eb215d2e5a03e04408f2dd0230623a9375e10294cd5542e22,
    0x3f41febc093861dcc4d6e45d8416f4180f903841beb53cfca70d48f4a80c42741cf026100ac67cbc1852224e117cb28453042b50caa6905179a982468a9991e213827c47c4db8fbc44410b1a0f4c4e736a342e3a9f83a8a8e900e630232d3bf0,
    0x3e6f9a04fff1e2ca8cc0ce6323e9b7a267bb1175a9c2c6614da228d4dba1af9a4613324792a0e7447c86666de77631f50471e744b59478cdb836ffbc1b6cec1b5df8c666f5dd94abfce6985fdccde60163a6c46ce4ca4307710d6769253180a1,
    0x666594b27eff3378ae422d9e4e6b4d9498cbe7e5732d7debd58e68f42d20d23a72b290998b0ec8c41e7e6e1c9c90672c8b02b1075504a47ec943d4eda3808e1e1b2276b3877ba105b6bf94c394f1b5074812545a17c772a760b3bfd130f4149c,
    0x192ef6e13da477d564d651c5a3ab9a5c2bbaa24279380bb84d60a545e3c83d7666e05c50c69eba76c096b0a89502bb00b49224ded0f139c64a18b488080c585f255b4772e2a5dfd07e1c898e3a6e0e2bb4f34f84af47641c7f838834e8760191,
    0x41d6352de4f661f8b76fdc026c855525a773fabc53d3907c456ba3a9dadc80021279642b1b786ffa7e706b6b1110615e3fbf6ee8be7f06217a8cf66ba9102ef6751a8d93766c1bbeb7aa594c7e15771eae53e34fd098e863ae50825194be0212,
    0x3e7d20a4c0e3258dea6c6613092696bef1229070cb1c62a9b0bb85a36fd59ce808cb9fb26e7ff6846b2845c1414a79114a1b3ecd9140e77e1025a5340d4bb437394760f4b698a0a2bee6ad05ec245819fdf4244f6fe2b7c42b486777fdacbc53,
    0x6c93e6d3a942a0b2fc9efb8a9687f9541c8d5f756ec242b0c8068670542853af34226cb4af59778c348ea63a215c48e66b58c6295c9079c01e6fec335512a13e2976f3a3a460b6cc08c022d363c7d05421ddc22ff9ccca6dc59d22034afe6d6b,
    0x2d9f052afa760904badec12e4b50ad622e715e260dd12ab359faed6432a52c932031266b3a6337e77709ffb8ffca59cfbff009b65bd68884d3aaf0fe6bcdd04954a06da760764ec78d6e25b82636969e15407ec7f3e4918c7d7a73188258998a,
    0x7ca0dabbc86a6af611e420c6104d079506e661d257b805c7040a1bc581eca1874186b9f85b9f756000a7c9c112fb83fefee40c80613d41d29f1fa1fca48293464b75c82e3679bc86372306c6eec6a056f3685afddac13c0b8aac00f51fb7c73c,
    0xa19b41d24d1fab0a156748dbceee99bee98bd1843561fb04a7d30a8cd3518b6675cf3fc52015d7abd12036c4cc7cce86b091fa22882589267b99c0ec6a0b7463ac479331107343c9fc563a28305973f7c0b3c7c0841dc8a06920cc0fdc5f71f,
    0x47ed89bdf9f8131a2063917998d5e2a305374d357a8b40e30b55edce5d222e9b1d0fe50d1d428add4d3c0877b6d4341211111805232ae64275e89939c151bdab11107be039dd7a94b68c8b565e956021e553b0fcd3ce17642bbd30d5246072bd,
    0x172b7be562bd205d20c923266e58a956f3cc9b01d20b7a599a269e98a5bbacdc538b6f4b332946290216da2db29e6e3ad33a719f2b05b71d4aecd9a92d9b48bb08b03380a7e9eb9c16811ad038f0454676b9af9fbad76acbcc3e8a956bf742ac,
    0x3be79268823abe54aab79cfc8a517f3731f08d734a8fbe5f1f81436e204ad0690c322541804593c4f22c3e52dae672c2cadcbd145ac64bb6ce7d7fd6d8629da1500a557c59a61221d2b2daf306045ba97e6a72f4a013244fc2423785e120f570,
    0x558cdd337e00a54a49dcd4507a7ca1966b75c149a1933cbd3038bc075a5bccfc159d9f302f03a72e58274203de1ffdecadb41d3d6d53e9d4cbeb940618ea5c531d75b8c2301229d13c4ce0299459982dcdf7a128dad4dc0a512a0dea5b0fd772,
    0x4bc933a6551fb1b4f15039b6ce29dc1710c188cedbb18e118dc7baf73b90ffba6ac6486e477a0febb31c356c6d2e98ab6d6b4c480d2954662860dec74c3a2f5438672f992313a39f75b4c99e1f23e3fc8a28689b3d186289b8e23fecad2697ff,
    0x3ba14922dbd6bf44b4d72600c40cf67f431c33b98d5c85e49842c7173c52a8d87ef8c4d7409f71fa7d6e832c348b04ab14bd199ae4c034ee3406709abc8bbdb35ccfa9db4df80828ff8c4dd54b0f9800225ae085bc6d74fe7fb24832ff2103c5,
    0x7c323e389d130ed301994faca995dc6be29d998700774f2b17ed672d54150b8b6344f46918b7d084e63fbf7103fa2863ba9c75401258acccf2fc6d8e35acce674ea1f8b41cd286c84558fe31857b46b4029afc86e6989baf0bd79a9aa8c152ad,
    0x28cf490f7a20b600e816843dacbd12f48630682bdfb08192f70f92074c879f880e19d7987ce9070a2260d425d016d9202d37ecaeca49de1d7d2f8bf20cf997837b77ff5d441d63a393d6f2058a2dd776c7c2dc88a64a9b61eaa8859c337d3fc9,
    0x66be43eb9fcd63b7985250d00b02854cbdda1c066085032256c5ff7f78b2facc656e0c1c387faa3210afbe767b80f309acfe19a893aca80e8b72fce314a6aaf72171f9e9878825395f89cea1dc6af180df8f44aede6c667d9eb644e1956fbad4,
    0x6099adcea1cb1d9786366cd05884386de7e101607f7518fe91da08a754f2b5720a650c94e7ec93319b0242d11930f6c929d3518c8e5ad81b792f3ea2fd5cf1f2023ec0938f8af52bacb65c18f638c89f946d43cb6eed97f64f62a6b5c9c51188,
)


def slices(kb, every=-1):
    m = _MASK255
    p = P
    w = _M256
    tab = TABLE
    kb = ((int.from_bytes(kb, "little") + _BIAS) * _HALF % L).to_bytes(33, "little")
    X, Y, Z, T = 0, 1, 1, 0  # the identity
    bs = 1  # 1: the point kept is the true one; 0: its negative
    for c in range(25, -1, -1):
        if c & every == every:  # public: the column number
            yield None
        if c < 25:
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
        for blk in (0, 16):
            # column c of this block: bits c + 26 r of K, r = 4..0 of the
            # block's rows (blk 16: rows 5..9); t: the top sign's bit,
            # d: the other four, relative to it
            r = c + (104 if blk == 0 else 234)
            t = (kb[r >> 3] >> (r & 7)) & 1
            r -= 26
            d = (kb[r >> 3] >> (r & 7)) & 1
            r -= 26
            d = d + d | (kb[r >> 3] >> (r & 7)) & 1
            r -= 26
            d = d + d | (kb[r >> 3] >> (r & 7)) & 1
            r -= 26
            d = d + d | (kb[r >> 3] >> (r & 7)) & 1
            d ^= 15 & (t - 1)
            neg = -(bs ^ t)  # -1: negate the point kept before adding
            bs = t
            # the entry for digit d, every entry read
            q = 0
            for j in range(16):
                q ^= (((d ^ j) - 1) >> 4) & tab[blk + j]
            X = (X ^ neg) - neg
            T = (T ^ neg) - neg
            # Q = Q + entry (madd-2008-hwcd-3; T3 only before the second
            # addition: a doubling or the end follows the second)
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
            if blk == 0:
                T = e * h
                T = (T & m) + 19 * (T >> 255)
                T %= p
    # u = (1 + y) / (1 - y) = (Z + Y) / (Z - Y)
    if every >= 0:
        yield None
    for r in _inverse_slices((Z - Y) % p):
        if r is None and every >= 0:
            yield None
    yield (Z + Y) * r % p
