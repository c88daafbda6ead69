# qcd-peer processes for end-to-end tests: the harness is the host
# package's (qcdhost.harness, which the benchmarks import too); the tests
# import it under this short name.
from qcdhost.harness import (  # noqa: F401
    EXAMPLE,
    PSK,
    QCD_PEER,
    QUICK_RETRANSMIT,
    Peer,
    app_config,
    free_port,
    gateway_config,
    one_up,
)
