"""A two-node SLURM cluster with accounting and fake GPUs, for tests.

Started from the Debian packages of tests/setup.d/30-slurm.sh: munged, MariaDB,
slurmdbd, slurmctld and two slurmd run in the foreground as children of this process,
on private ports, sockets and directories under one state directory. Clients find
the cluster through ``SLURM_CONF`` (see ``SlurmCluster.env``). ``stop()`` ends only
the daemons this module started, by PID, newest first, then removes the network
namespace and links it made.

The GPU node (partition boost_usr_prod) is like Leonardo's booster nodes: no internet.
Its slurmd, and so every job step on it, runs in a network namespace (``ip netns``)
whose only link is a veth pair to the host: it reaches the host's end of that link
(where the controller listens) and no other address, not the host's others, not the
internet. The serial node (lrd_all_serial) runs on the host's network.
``remote_address`` is a stand-in for a remote endpoint (an API judge): an address of
the host that the serial node's jobs reach and the GPU node's do not.

    python -m tests.slurm.cluster start /tmp/slurm   # prints `export SLURM_CONF=...`
    python -m tests.slurm.cluster stop /tmp/slurm
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

HERE = Path(__file__).resolve().parent
CLUSTER = "personaem"
NODE = "lrdn0001"  # the booster (GPU) node, without internet
SERIAL_NODE = "lrdsn0001"  # the serial node, on the host's network
ACCOUNT = "ci_account"
DEBUG_QOS = "boost_qos_dbg"
DAEMONS = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd", "slurmd_serial")
REQUIRED_TOOLS = (
    "munged",
    "mungekey",
    "mariadbd",
    "mariadb-install-db",
    "slurmdbd",
    "slurmctld",
    "slurmd",
    "sbatch",
    "sacct",
    "sacctmgr",
    "ip",
    "unshare",
    "nsenter",
)


class ClusterError(RuntimeError):
    """The test cluster could not be started; the message names the daemon and its log."""


def missing_requirements() -> list[str]:
    """Why the cluster cannot start here (empty when it can)."""
    reasons = []
    if os.geteuid() != 0:
        reasons.append("needs root (daemons run as root, fake GPUs need mknod)")
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        reasons.append(
            "missing " + ", ".join(missing) + " (install with tests/setup.d/30-slurm.sh)"
        )
    elif subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode != 0:
        reasons.append("cannot create network namespaces (the GPU node runs in one)")
    return reasons


@dataclass
class OfflineNetwork:
    """A network namespace linked to the host by one veth pair (host side
    ``host_addr``, namespace side ``node_addr``, a /30 of their own), and
    ``remote_addr``, a second address of the host's end outside that /30: the host
    reaches it, the namespace has no route to it. Names and addresses derive from ``tag`` so that
    clusters of several test runs on one machine do not collide."""

    tag: int

    @property
    def name(self) -> str:
        return f"pe{self.tag}"

    @property
    def host_addr(self) -> str:
        return f"10.231.{self.tag % 250}.1"

    @property
    def node_addr(self) -> str:
        return f"10.231.{self.tag % 250}.2"

    @property
    def remote_addr(self) -> str:
        return f"10.232.{self.tag % 250}.1"

    def create(self) -> None:
        self.remove()
        ns, host_end, node_end = self.name, f"{self.name}h", f"{self.name}n"
        for argv in (
            ["ip", "netns", "add", ns],
            ["ip", "link", "add", host_end, "type", "veth", "peer", "name", node_end],
            ["ip", "link", "set", node_end, "netns", ns],
            ["ip", "addr", "add", f"{self.host_addr}/30", "dev", host_end],
            ["ip", "link", "set", host_end, "up"],
            ["ip", "-n", ns, "addr", "add", f"{self.node_addr}/30", "dev", node_end],
            ["ip", "-n", ns, "link", "set", node_end, "up"],
            ["ip", "-n", ns, "link", "set", "lo", "up"],
            # a host address outside the link's /30: the namespace has no route to it
            ["ip", "addr", "add", f"{self.remote_addr}/32", "dev", host_end],
        ):
            result = subprocess.run(argv, capture_output=True, text=True)
            if result.returncode != 0:
                self.remove()
                raise ClusterError(f"{' '.join(argv)} failed: {result.stderr.strip()}")

    def remove(self) -> None:
        """Remove what create() made (deleting one end of the veth pair removes both,
        and the addresses on them)."""
        for argv in (
            ["ip", "link", "del", f"{self.name}h"],
            ["ip", "netns", "del", self.name],
        ):
            subprocess.run(argv, capture_output=True)

    def exec_prefix(self) -> list[str]:
        # nsenter, not `ip netns exec`: that remounts /sys, hiding the cgroup file system
        # that slurmd reads
        return ["nsenter", f"--net=/run/netns/{self.name}"]


def die_with_parent(sig: int = signal.SIGTERM):
    """A Popen preexec_fn: the child gets `sig` when its parent dies, even by SIGKILL."""

    def set_parent_death_signal() -> None:
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, sig)

    return set_parent_death_signal


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class SlurmCluster:
    """One cluster under ``state``: ``start()``, run jobs with ``env``, ``stop()``."""

    state: Path
    # A Leonardo booster node, as declared to SLURM (not as the machine has it).
    cpus: int = 32
    memory_mb: int = 494_000
    gpus: int = 4
    # The daemons get SIGTERM when this process dies (even by SIGKILL); the CLI's
    # `start` turns this off so that they outlive it.
    tie_to_parent: bool = True
    pids: dict[str, int] = field(default_factory=dict)
    _procs: dict[str, subprocess.Popen] = field(default_factory=dict, repr=False)
    network: OfflineNetwork = field(
        default_factory=lambda: OfflineNetwork(100 + os.getpid() % 150), repr=False
    )

    @property
    def remote_address(self) -> str:
        """An address of the host that jobs on the serial node reach and jobs on the GPU
        node do not (a remote endpoint's stand-in)."""
        return self.network.remote_addr

    @property
    def conf(self) -> Path:
        return self.state / "etc" / "slurm.conf"

    @property
    def munge_socket(self) -> Path:
        return self.state / "run" / "munge.socket"

    @property
    def bin_dir(self) -> Path:
        return self.state / "bin"

    @property
    def env(self) -> dict[str, str]:
        """The environment that SLURM clients (and the jobs they submit) need."""
        path = os.pathsep.join([str(self.bin_dir), os.environ.get("PATH", "")])
        return {**os.environ, "SLURM_CONF": str(self.conf), "PATH": path}

    # ------------------------------------------------------------------ start
    def start(self, timeout: float = 120) -> None:
        reasons = missing_requirements()
        if reasons:
            raise ClusterError("cannot start the test cluster: " + "; ".join(reasons))
        self.state = self.state.resolve()
        for sub in ("etc", "run", "log", "ctld", "slurmd", "dev", "db", "munge", "bin"):
            (self.state / sub).mkdir(parents=True, exist_ok=True)
        try:
            self.network.create()
            (self.state / "network.json").write_text(json.dumps({"tag": self.network.tag}))
            values = self._render_configs()
            self._start_munge(timeout)
            self._start_mariadb(values["db_port"], timeout)
            self._start("slurmdbd", ["slurmdbd", "-D"], timeout)
            self._wait(lambda: self._ok(["sacctmgr", "-n", "list", "cluster"]), "slurmdbd", timeout)
            self._sacctmgr("add", "cluster", CLUSTER)
            self._start("slurmctld", ["slurmctld", "-D", "-i"], timeout)
            self._wait(self._controller_up, "slurmctld", timeout)
            # the GPU node's slurmd in the namespace without internet; its job steps
            # (children of slurmd's slurmstepd) inherit it
            self._start(
                "slurmd", [*self.network.exec_prefix(), "slurmd", "-D", "-N", NODE], timeout
            )
            self._start("slurmd_serial", ["slurmd", "-D", "-N", SERIAL_NODE], timeout)
            self._wait(self._node_idle, "slurmd", timeout)
            self._add_associations()
        except BaseException:
            self.stop()
            raise

    def _render_configs(self) -> dict[str, str]:
        ports = {name: free_port() for name in ("ctld_port", "slurmd_port", "dbd_port", "db_port")}
        values = {
            "cluster": CLUSTER,
            "controller": socket.gethostname().split(".")[0],
            # the controller's address on the GPU node's link (the host's end): the one
            # address that both nodes reach
            "controller_addr": self.network.host_addr,
            "node": NODE,
            "node_addr": self.network.node_addr,
            "serial_node": SERIAL_NODE,
            "state": str(self.state),
            "munge_socket": str(self.munge_socket),
            "cpus": str(self.cpus),
            "memory_mb": str(self.memory_mb),
            "gpus": str(self.gpus),
            "last_gpu": str(self.gpus - 1),
            **{k: str(v) for k, v in ports.items()},
        }
        for name in ("slurm.conf", "gres.conf", "cgroup.conf", "slurmdbd.conf"):
            text = Template((HERE / name).read_text()).substitute(values)
            target = self.state / "etc" / name
            target.write_text(text)
            target.chmod(0o600 if name == "slurmdbd.conf" else 0o644)
        # Inside a job, the jobstep executor runs `srun` with every SLURM_* variable
        # but a few removed, SLURM_CONF included; a real cluster has /etc/slurm/slurm.conf.
        # Rather than write into /etc, the test cluster's PATH starts with an srun
        # that knows its configuration.
        self.bin_dir.mkdir(exist_ok=True)
        srun = self.bin_dir / "srun"
        srun.write_text(f'#!/bin/sh\nSLURM_CONF={self.conf} exec {shutil.which("srun")} "$@"\n')
        srun.chmod(0o755)
        for index in range(self.gpus):
            device = self.state / "dev" / f"nvidia{index}"
            if not device.exists():
                os.mknod(device, 0o666 | 0o020000, os.makedev(1, 3))
        (self.state / "ports.json").write_text(json.dumps(ports))
        return values

    def _start_munge(self, timeout: float) -> None:
        key = self.state / "munge" / "munge.key"
        if not key.exists():
            subprocess.run(["mungekey", "--create", f"--keyfile={key}"], check=True)
            key.chmod(0o600)
        self._start(
            "munged",
            [
                "munged",
                "--foreground",
                "--force",
                f"--socket={self.munge_socket}",
                f"--key-file={key}",
                f"--pid-file={self.state / 'run' / 'munged.pid'}",
                f"--log-file={self.state / 'log' / 'munged.log'}",
                f"--seed-file={self.state / 'munge' / 'munged.seed'}",
            ],
            timeout,
        )

        def munge_works() -> bool:
            cred = subprocess.run(
                ["munge", "-n", f"--socket={self.munge_socket}"], capture_output=True
            )
            return cred.returncode == 0 and self._ok(
                ["unmunge", f"--socket={self.munge_socket}"], input=cred.stdout
            )

        self._wait(munge_works, "munged", timeout)

    def _start_mariadb(self, port: str, timeout: float) -> None:
        datadir = self.state / "db"
        if not (datadir / "mysql").exists():
            result = subprocess.run(
                [
                    "mariadb-install-db",
                    "--no-defaults",
                    f"--datadir={datadir}",
                    "--user=root",
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                ],
                capture_output=True,
                text=True,
            )
            if result.returncode != 0:
                raise ClusterError(f"mariadb-install-db failed: {result.stderr[-2000:]}")
        self._start(
            "mariadbd",
            [
                "mariadbd",
                "--no-defaults",
                f"--datadir={datadir}",
                f"--socket={self.state / 'run' / 'mariadb.sock'}",
                f"--port={port}",
                "--bind-address=127.0.0.1",
                "--user=root",
                f"--pid-file={self.state / 'run' / 'mariadbd.pid'}",
                f"--log-error={self.state / 'log' / 'mariadbd.log'}",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=64M",
                "--innodb-log-file-size=16M",
                "--innodb-flush-log-at-trx-commit=0",
                "--innodb-lock-wait-timeout=900",
                "--skip-name-resolve",
            ],
            timeout,
        )

        def db_up() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", int(port))) == 0

        self._wait(db_up, "mariadbd", timeout)

    def _add_associations(self) -> None:
        self._sacctmgr("add", "qos", DEBUG_QOS, "MaxWall=00:30:00")
        self._sacctmgr("add", "account", ACCOUNT, f"Cluster={CLUSTER}")
        self._sacctmgr(
            "add",
            "user",
            "root",
            f"Account={ACCOUNT}",
            f"Cluster={CLUSTER}",
            f"QOS=normal,{DEBUG_QOS}",
            "DefaultQOS=normal",
        )

    # ------------------------------------------------------------------ stop
    def stop(self) -> None:
        """Cancel this cluster's jobs, then end the daemons started here (by PID)."""
        if "slurmctld" in self._live():
            subprocess.run(
                ["scancel", "--full", "--user", "root"], env=self.env, capture_output=True
            )
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and self._jobs_left():
                time.sleep(0.5)
        for name in reversed(DAEMONS):
            pid = self.pids.get(name)
            if pid is None:
                continue
            proc = self._procs.get(name)
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            else:
                if not self._wait_exit(pid, proc, 20):
                    os.kill(pid, signal.SIGKILL)
                    self._wait_exit(pid, proc, 5)
            self.pids.pop(name)
            self._procs.pop(name, None)
        self._save_pids()
        self.network.remove()

    def _jobs_left(self) -> bool:
        out = subprocess.run(
            ["squeue", "-h", "-o", "%i"], env=self.env, capture_output=True, text=True
        )
        return out.returncode == 0 and bool(out.stdout.strip())

    @staticmethod
    def _wait_exit(pid: int, proc: subprocess.Popen | None, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if proc is not None:
                if proc.poll() is not None:
                    return True
            else:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return True
            time.sleep(0.2)
        return False

    # ------------------------------------------------------------------ helpers
    def _start(self, name: str, argv: list[str], timeout: float) -> None:
        log = open(self.state / "log" / f"{name}.stdout", "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent() if self.tie_to_parent else None,
        )
        log.close()
        self._procs[name] = proc
        self.pids[name] = proc.pid
        self._save_pids()

    def _save_pids(self) -> None:
        (self.state / "pids.json").write_text(json.dumps(self.pids))

    def _live(self) -> list[str]:
        live = []
        for name, pid in self.pids.items():
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                continue
            live.append(name)
        return live

    def _wait(self, check, name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            proc = self._procs.get(name)
            if proc is not None and proc.poll() is not None:
                raise ClusterError(f"{name} exited with {proc.returncode}; {self._log_tail(name)}")
            if check():
                return
            time.sleep(0.3)
        raise ClusterError(f"{name} not ready after {timeout:.0f} s; {self._log_tail(name)}")

    def _log_tail(self, name: str) -> str:
        parts = []
        for path in sorted((self.state / "log").glob(f"{name}*")):
            lines = path.read_text(errors="replace").splitlines()[-15:]
            parts.append(f"{path}:\n" + "\n".join(lines))
        return "\n".join(parts) or f"no log of {name} in {self.state / 'log'}"

    def _ok(self, argv: list[str], input: bytes | None = None) -> bool:
        return subprocess.run(argv, env=self.env, input=input, capture_output=True).returncode == 0

    def _controller_up(self) -> bool:
        out = subprocess.run(["scontrol", "ping"], env=self.env, capture_output=True, text=True)
        return "UP" in out.stdout

    def _node_idle(self) -> bool:
        out = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%t"], env=self.env, capture_output=True, text=True
        )
        states = set(out.stdout.split())
        if states & {"drain", "drng", "down", "inval", "drain*"}:
            reason = subprocess.run(
                ["sinfo", "-R", "-h"], env=self.env, capture_output=True, text=True
            ).stdout
            raise ClusterError(f"nodes {NODE}, {SERIAL_NODE}: {sorted(states)}: {reason.strip()}")
        # both nodes up (a node that has not registered yet is `down*`)
        return states == {"idle"}

    def _sacctmgr(self, *args: str) -> None:
        result = subprocess.run(
            ["sacctmgr", "-i", *args], env=self.env, capture_output=True, text=True
        )
        if result.returncode != 0 and "Nothing new added" not in result.stdout + result.stderr:
            raise ClusterError(
                f"sacctmgr {' '.join(args)} failed: {(result.stdout + result.stderr).strip()}"
            )

    # ------------------------------------------------------------------ queries
    def sacct(self, *fields: str, extra: tuple[str, ...] = ()) -> list[dict[str, str]]:
        """Every job (allocation lines only, -X) of this cluster, as dicts of ``fields``."""
        out = subprocess.run(
            [
                "sacct",
                "-X",
                "-a",
                "-P",
                "-n",
                "--starttime",
                "now-1days",
                "--format",
                ",".join(fields),
                *extra,
            ],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return [dict(zip(fields, line.split("|"), strict=True)) for line in out.stdout.splitlines()]


def _stop_from_state(state: Path) -> None:
    """CLI stop: end the daemons recorded in state/pids.json (and nothing else)."""
    pids_file = state / "pids.json"
    if not pids_file.exists():
        print(f"{pids_file}: no daemons recorded", file=sys.stderr)
        return
    cluster = SlurmCluster(state.resolve())
    cluster.pids = {k: int(v) for k, v in json.loads(pids_file.read_text()).items()}
    network_file = state / "network.json"
    if network_file.exists():
        cluster.network = OfflineNetwork(json.loads(network_file.read_text())["tag"])
    cluster.stop()


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print(__doc__, file=sys.stderr)
        return 2
    state = Path(argv[1])
    if argv[0] == "start":
        cluster = SlurmCluster(state, tie_to_parent=False)
        cluster.start()
        print(f"export SLURM_CONF={cluster.conf}")
        # The daemons outlive this process; `stop` ends them by their recorded PIDs.
        return 0
    _stop_from_state(state)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
