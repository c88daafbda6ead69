# qcd-peer processes for end-to-end tests: the harness is the host
# package's (qcdhost.harness, which the benchmarks import too); the tests
# import it under this short name.
from qcdhost.harness import (  # noqa: F401
    DEV_INNER,
    EXAMPLE,
    GW_INNER,
    PSK,
    QCD_PEER,
    QUICK_RETRANSMIT,
    Peer,
    app_config,
    device_config,
    echo_gateway,
    free_local,
    free_port,
    gateway_config,
    one_up,
)
