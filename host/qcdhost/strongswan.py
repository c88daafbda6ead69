# A private strongSwan charon for interop tests, benchmarks and the demo
# (../shared/docs/strongswan-here.md).
#
# Each Charon runs /usr/lib/ipsec/charon as root with STRONGSWAN_CONF in its
# own temporary directory (vici socket and log there too), loading only the
# plugins it needs (kernel-libipsec: userspace ESP through a TUN device, since
# kernel IPsec is not available here; kdf: strongSwan 5.9.8 derives its keys
# through it and fails IKE_AUTH without it). Everything runs in private
# namespaces, so nothing touches the host's network, a system charon, or
# another test run:
#
#   peer netns (held by a `sleep`)          charon's netns + mount ns
#   our peer, 192.0.2.2 ports 500/4500 <-veth-> charon, 192.0.2.1 ports 500/4500
#                                           10.1.0.1 on lo (inside the gateway's
#                                           traffic selector: kernel-libipsec
#                                           routes the Child SA from it)
#                                           /run bind-mounted (charon insists
#                                           on the pid file /run/charon.pid)
#
# Both ends use the standard ports, so NAT-T floating and the non-ESP marker
# work as deployed (strongSwan adds the marker whenever neither port is 500).
# Our peer (qcd-peer) is started in its namespace with run_peer()
# (nsenter). charon is driven with the PyPI `vici` package over its Unix
# socket and stopped with SIGTERM by pid; the namespaces go with the processes.
import os
import shutil
import signal
import socket
import subprocess
import time

CHARON = "/usr/lib/ipsec/charon"
INSTALL = "apt-get install -y strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-extra-plugins"
# curve25519 (libstrongswan-extra-plugins): D-H group 31, which our engine
# proposes first.
PLUGINS = "random nonce openssl sha1 sha2 hmac kdf aes gmp curve25519 pem pkcs1 x509 pubkey kernel-libipsec kernel-netlink socket-default vici"
CURVE25519_PLUGIN = "/usr/lib/ipsec/plugins/libstrongswan-curve25519.so"
# What a gateway takes by default here: X25519 or MODP-2048, like a
# deployed strongSwan; tests narrow it to one group (load(extra=...)).
PROPOSALS = ["aes256-sha256-curve25519-modp2048"]

CONF = """charon {
  port = %(port)d
  port_nat_t = %(natt)d
  load_modular = no
  load = %(plugins)s
  install_virtual_ip = no
  retransmit_timeout = %(rt_timeout)s
  retransmit_base = %(rt_base)s
  retransmit_tries = %(rt_tries)d
  cookie_threshold = %(cookie_threshold)d
  plugins {
    vici {
      socket = unix://%(dir)s/charon.vici
    }
  }
  filelog {
    log {
      path = %(dir)s/charon.log
      flush_line = yes
      time_format = %%H:%%M:%%S
      default = 1
      ike = 2
      net = 1
      enc = 1
    }
  }
}
"""


def missing_reason():
    """None when charon can run here, else (what is missing, how to get it)."""
    if not os.path.exists(CHARON):
        return "strongSwan's charon " + CHARON, INSTALL
    if not os.path.exists(CURVE25519_PLUGIN):
        return "strongSwan's curve25519 plugin " + CURVE25519_PLUGIN, INSTALL
    if os.geteuid() != 0:
        return "root", "run as root: charon creates a TUN device and namespaces"
    try:
        import vici  # noqa: F401
    except ImportError:
        return "the vici package", "make venv"
    for tool, pkg in (("unshare", "util-linux"), ("nsenter", "util-linux"), ("ip", "iproute2")):
        if shutil.which(tool) is None:
            return tool, "apt-get install " + pkg
    if subprocess.run(["unshare", "--net", "--mount", "true"], capture_output=True).returncode != 0:
        return "unshare --net --mount", "root with CAP_SYS_ADMIN (a container may forbid it)"
    return None


GW_ADDR = "10.1.0.1"  # inside the gateway's traffic selector, on charon's lo
CHARON_ADDR = "192.0.2.1"  # RFC 5737 TEST-NET-1, on the veth pair
PEER_ADDR = "192.0.2.2"
# $0 = peer namespace holder pid, $1 = directory for /run, $2 = charon
SETUP = (
    "ip link set lo up && ip addr add %s/32 dev lo && "
    'ip link add v0 type veth peer name v1 netns "$0" && '
    "ip addr add %s/24 dev v0 && ip link set v0 up && "
    'nsenter --net=/proc/"$0"/ns/net sh -c "ip link set lo up && ip addr add %s/24 dev v1 && ip link set v1 up" && '
    'mount --bind "$1" /run && exec "$2"'
) % (GW_ADDR, CHARON_ADDR, PEER_ADDR)


class Charon:
    """charon in its own network and mount namespace, ports 500 and 4500."""

    port = 500
    natt = 4500

    def __init__(self, directory, rt_timeout=4.0, rt_base=1.8, rt_tries=5, cookie_threshold=30):
        self.dir = directory
        self.opts = dict(rt_timeout=rt_timeout, rt_base=rt_base, rt_tries=rt_tries, cookie_threshold=cookie_threshold)
        self.proc = None
        self.holder = None
        self._vici = None
        self.peers = []

    @property
    def log_path(self):
        return os.path.join(self.dir, "charon.log")

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def start(self, timeout=30.0):
        os.makedirs(os.path.join(self.dir, "run"), exist_ok=True)
        conf = os.path.join(self.dir, "strongswan.conf")
        with open(conf, "w") as f:
            f.write(CONF % dict(self.opts, port=self.port, natt=self.natt, plugins=PLUGINS, dir=self.dir))
        env = dict(os.environ, STRONGSWAN_CONF=conf)
        self.holder = subprocess.Popen(["unshare", "--net", "sleep", "infinity"], start_new_session=True)
        for _ in range(100):  # until the holder is in its own namespace
            if os.readlink("/proc/%d/ns/net" % self.holder.pid) != os.readlink("/proc/self/ns/net"):
                break
            time.sleep(0.01)
        cmd = ["unshare", "--net", "--mount", "sh", "-c", SETUP, str(self.holder.pid), os.path.join(self.dir, "run"), CHARON]
        with open(os.path.join(self.dir, "charon.stderr"), "w") as err:
            self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                break
            if os.path.exists(os.path.join(self.dir, "charon.vici")):
                try:
                    self.session()
                    return self
                except OSError:
                    pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("charon did not start:\n" + self.log()[-3000:])

    def netns(self):
        """nsenter prefix that runs a command in the peer's network namespace."""
        return ["nsenter", "--net=/proc/%d/ns/net" % self.holder.pid]

    def run_peer(self, args, log_path):
        """Start a process (e.g. qcd-peer) in the peer's namespace."""
        with open(log_path, "ab") as out:
            p = subprocess.Popen(self.netns() + list(args), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.peers.append(p)
        return p

    def gateway_netns(self):
        """nsenter prefix that runs a command in charon's own network
        namespace: the gateway's protected side (10.1.0.1 on its lo), where
        kernel-libipsec routes the Child SA's traffic."""
        return ["nsenter", "--net=/proc/%d/ns/net" % self.proc.pid]

    def gateway_side(self, args, log_path=None, wait=True, timeout=30.0):
        """Run a command on the gateway's protected side: started and
        returned (wait=False: a service, stopped with the charon), or run
        to its end (CompletedProcess)."""
        if wait:
            return subprocess.run(self.gateway_netns() + list(args), capture_output=True, text=True, timeout=timeout)
        with open(log_path or os.devnull, "ab") as out:
            p = subprocess.Popen(self.gateway_netns() + list(args), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.peers.append(p)
        return p

    def load_pool(self, name, addrs):
        """A virtual-IP pool for roadwarriors (connection option pools=[name])."""
        self.session().load_pool({name: {"addrs": addrs}})

    def session(self):
        if self._vici is None:
            import vici

            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(os.path.join(self.dir, "charon.vici"))
            self._sock = s
            self._vici = vici.Session(s)
        return self._vici

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=15.0):
        for p in self.peers:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.peers = []
        if self._vici is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._vici = None
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
        if self.holder is not None:
            self.holder.kill()
            self.holder.wait()
            self.holder = None

    # -- vici shortcuts ---------------------------------------------------------

    def load(self, name, local_id, remote_id, psk, local_ts, remote_ts, dpd_delay=0, extra=None, child_extra=None):
        child = {"local_ts": [local_ts], "remote_ts": [remote_ts], "esp_proposals": ["aes256-sha256"], "mode": "tunnel"}
        child.update(child_extra or {})
        conn = {
            "version": "2",
            "local_addrs": [CHARON_ADDR],
            "remote_addrs": [PEER_ADDR],
            "proposals": PROPOSALS,
            "dpd_delay": "%ds" % dpd_delay,
            "rekey_time": "0",
            "local": {"auth": "psk", "id": local_id},
            "remote": {"auth": "psk", "id": remote_id},
            "children": {"net": dict(child, rekey_time="0")},
        }
        conn.update(extra or {})
        v = self.session()
        v.load_conn({name: conn})
        v.load_shared({"id": "psk-" + name, "type": "IKE", "data": psk, "owners": [local_id, remote_id]})

    def sas(self, name=None):
        out = []
        for sa in self.session().list_sas({"ike": name} if name else {}):
            for k, v in sa.items():
                out.append((k, v))
        return out
