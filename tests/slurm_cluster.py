"""A real one-node SLURM cluster for the tests: the session fixture `slurm_cluster`.

It starts, each with a private configuration, socket, ports and state under a fresh folder /tmp/scalingkit-slurm-*
(nothing of the machine's own munge or slurm setup is read or changed, and two test sessions get two clusters):
- munged with its own random key and socket;
- where slurmdbd and MariaDB are installed, mariadbd (a scratch database on a private port) and slurmdbd, so that
  job accounting works and `sacct` answers: submitit polls job states with sacct, and without it a job that ends
  without a result (scancel, a node failure) is never seen to end (submitit logs "Bypassing sacct error" at every
  poll and job.done() stays False);
- slurmctld and slurmd for one node (this host, all its CPUs, 90% of its memory, partition `debug`).
Then it waits until `sinfo` shows the node idle. Start-up takes 2-6 s on the 2-core machine (under 1 s without
accounting); stopping cancels every job left, waits for the queue to empty and stops the daemons by their pid files
(a session killed before that leaves daemons behind: the next session stops them, see reap_orphans). munged runs as
root with a key of its own rather than the system's munge user and /etc/munge key: the system's setup is left alone.

Use it from a test module with `from slurm_cluster import slurm_cluster  # noqa: F401` and a test argument
`slurm_cluster` (a SlurmCluster: `.env`, `.cli(...)`, `.job(id)`, `.job_state(id)`, `.wait(...)`); while it is
up, os.environ["SLURM_CONF"] points at its slurm.conf, so submitit and the slurm commands reach it. Several modules
importing the fixture share one cluster. Where it cannot start (not root, slurm not installed, not Linux) the tests
skip with the reason, except under CI=true, where they fail; a cluster that has all it needs and still does not
start fails everywhere. Without slurmdbd/MariaDB the cluster starts without accounting and `.accounting` is False
(`require_accounting()` skips, or fails under CI). `.ci/run` installs everything with apt.

Settings that keep the tests quick (each documented in slurm.conf(5)): SchedulerParameters=sched_interval=1,
bf_interval=1 (a requeued job starts as soon as it is eligible, not at the next 30-60 s scheduling pass),
AuthInfo cred_expire=5 (a requeued job is eligible cred_expire + 1 s after the requeue; default 120 s), KillWait=2
(SIGKILL 2 s after SIGTERM: submitit's job wrapper ignores SIGTERM).
"""
from __future__ import annotations

import atexit
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

SLURM = {"munged": "/usr/sbin/munged", "slurmctld": "/usr/sbin/slurmctld", "slurmd": "/usr/sbin/slurmd"}
CLIENTS = ("sbatch", "srun", "squeue", "sinfo", "scancel", "scontrol", "munge")
ACCOUNTING = {"slurmdbd": "/usr/sbin/slurmdbd", "mariadbd": "/usr/sbin/mariadbd"}
INSTALL = "apt-get install -y slurm-wlm munge slurmdbd mariadb-server"
PREFIX = "scalingkit-slurm-"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def skip_or_fail(reason: str):
    """Skip with the reason; under CI=true fail instead (CI must run what the tests need)."""
    if in_ci():
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


def why_unavailable() -> str | None:
    """Why no cluster can start here, or None."""
    if not sys.platform.startswith("linux"):
        return "a SLURM cluster needs Linux"
    if os.geteuid() != 0:
        return "starting a private SLURM cluster needs root (slurmd runs jobs as their users)"
    missing = [p for p in SLURM.values() if not os.access(p, os.X_OK)]
    missing += [c for c in CLIENTS if shutil.which(c) is None]
    if missing:
        return f"SLURM is not installed ({', '.join(missing)} missing; `{INSTALL}` installs it, as .ci/run does)"
    return None


def accounting_missing() -> list[str]:
    missing = [p for p in ACCOUNTING.values() if not os.access(p, os.X_OK)]
    return missing + ([] if shutil.which("sacctmgr") and shutil.which("sacct") else ["sacct/sacctmgr"])


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class ClusterError(RuntimeError):
    pass


class SlurmCluster:
    """One node, one partition (`debug`), private daemons under `root`."""

    def __init__(self, root: Path, accounting: bool):
        self.root, self.accounting = Path(root), accounting
        self.name = "sk" + secrets.token_hex(3)
        self.host = socket.gethostname().split(".")[0]
        self.cpus = os.cpu_count() or 1
        self.conf = self.root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.logs = self.root / "log"
        self.mariadb: subprocess.Popen | None = None
        self.started_seconds = 0.0

    # ---------------------------------------------------------------------------------------------- start, stop
    def start(self, timeout: float = 60.0) -> "SlurmCluster":
        t0 = time.monotonic()
        for sub in ("state", "spool", "log", "db"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "owner.pid").write_text(str(os.getpid()))
        ctld, slurmd, dbd, db = free_ports(4)
        self._start_munge()
        self._write_conf(ctld, slurmd, dbd, db)
        if self.accounting:
            self._start_accounting(dbd, db, t0 + timeout)
        self._daemon("slurmctld", [SLURM["slurmctld"], "-f", str(self.conf)], "slurmctld.pid", t0 + timeout)
        self._daemon("slurmd", [SLURM["slurmd"], "-f", str(self.conf)], "slurmd.pid", t0 + timeout)
        self.wait(lambda: (self.cli("sinfo", "-h", "-o", "%T", check=False) or "").strip() == "idle",
                  max(1.0, t0 + timeout - time.monotonic()), "the node to be idle")
        self.started_seconds = time.monotonic() - t0
        return self

    def _start_munge(self) -> None:
        key = self.root / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self.root.chmod(0o711)  # munged insists that everyone may traverse to its socket
        subprocess.run([SLURM["munged"], f"--socket={self.root / 'munge.socket'}", f"--key-file={key}",
                        f"--pid-file={self.root / 'munged.pid'}", f"--log-file={self.logs / 'munged.log'}",
                        f"--seed-file={self.root / 'munged.seed'}"], check=True, capture_output=True, timeout=30)

    def _write_conf(self, ctld: int, slurmd: int, dbd: int, db: int) -> None:
        r, host = self.root, self.host
        memory = _memory_mb()
        lines = [
            f"ClusterName={self.name}", f"SlurmctldHost={host}(127.0.0.1)", f"SlurmctldPort={ctld}",
            f"SlurmdPort={slurmd}", "SlurmUser=root", "SlurmdUser=root", "AuthType=auth/munge", "CredType=cred/munge",
            f"AuthInfo=socket={r / 'munge.socket'},cred_expire=5", f"StateSaveLocation={r / 'state'}",
            f"SlurmdSpoolDir={r / 'spool'}", f"SlurmctldPidFile={r / 'slurmctld.pid'}",
            f"SlurmdPidFile={r / 'slurmd.pid'}", f"SlurmctldLogFile={self.logs / 'slurmctld.log'}",
            f"SlurmdLogFile={self.logs / 'slurmd.log'}", "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core", "ReturnToService=2", "MpiDefault=none",
            "KillWait=2", "SchedulerParameters=sched_interval=1,bf_interval=1",
            f"NodeName={host} NodeAddr=127.0.0.1 NodeHostname={host} CPUs={self.cpus} RealMemory={memory} "
            "State=UNKNOWN",
            f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP",
        ]
        if self.accounting:
            lines += ["AccountingStorageType=accounting_storage/slurmdbd", "AccountingStorageHost=localhost",
                      f"AccountingStoragePort={dbd}",
                      f"AccountingStoragePass={r / 'munge.socket'}",  # the munged that slurmdbd's connections use
                      "JobAcctGatherType=jobacct_gather/none"]
            dbd_conf = self.root / "slurmdbd.conf"  # slurmdbd reads it from SLURM_CONF's folder
            dbd_conf.write_text("\n".join([
                "AuthType=auth/munge", f"AuthInfo=socket={r / 'munge.socket'}", "DbdHost=localhost",
                f"DbdPort={dbd}", "SlurmUser=root", f"PidFile={r / 'slurmdbd.pid'}",
                f"LogFile={self.logs / 'slurmdbd.log'}", "StorageType=accounting_storage/mysql",
                "StorageHost=127.0.0.1", f"StoragePort={db}", "StorageUser=root", "StorageLoc=slurm_acct_db",
            ]) + "\n")
            dbd_conf.chmod(0o600)
        self.conf.write_text("\n".join(lines) + "\n")

    def _start_accounting(self, dbd: int, db: int, deadline: float) -> None:
        """A scratch MariaDB (no grant tables: only this cluster's slurmdbd talks to it, on 127.0.0.1), slurmdbd,
        and this cluster registered in it."""
        log = open(self.logs / "mariadb.log", "wb")
        self.mariadb = subprocess.Popen(
            [ACCOUNTING["mariadbd"], "--no-defaults", f"--datadir={self.root / 'db'}", "--user=root",
             f"--socket={self.root / 'mysql.sock'}", f"--port={db}", "--bind-address=127.0.0.1",
             f"--pid-file={self.root / 'mariadb.pid'}", "--skip-grant-tables", "--innodb-buffer-pool-size=32M",
             "--innodb-log-file-size=8M", "--innodb-lock-wait-timeout=900"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.wait(lambda: _port_open(db) or self.mariadb.poll() is not None, deadline - time.monotonic(),
                  "MariaDB to listen")
        if self.mariadb.poll() is not None:
            raise ClusterError(f"mariadbd exited with {self.mariadb.returncode}\n{self.tails()}")
        self._daemon("slurmdbd", [ACCOUNTING["slurmdbd"]], "slurmdbd.pid", deadline)
        self.wait(lambda: self.cli("sacctmgr", "-i", "add", "cluster", self.name, check=False, timeout=15,
                                   ok_codes=(0, 1)) is not None and self._registered(),
                  deadline - time.monotonic(), "slurmdbd to register the cluster")

    def _registered(self) -> bool:
        out = self.cli("sacctmgr", "-n", "-P", "list", "cluster", "format=cluster", check=False, timeout=15)
        return self.name in (out or "").split()

    def _daemon(self, name: str, argv: list[str], pid_file: str, deadline: float) -> None:
        proc = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise ClusterError(f"{name} did not start (exit {proc.returncode}): {proc.stderr.strip()}\n{self.tails()}")
        self.wait(lambda: _pid_of(self.root / pid_file, name) is not None, deadline - time.monotonic(),
                  f"{name} to write its pid file")

    def stop(self) -> None:
        """Cancel every job, wait for the queue to empty, stop the daemons by their pid files, remove the folder."""
        if (self.root / "slurmctld.pid").exists():
            self.cli("scancel", "--user=root", check=False)
            try:
                self.wait(self.queue_empty, 20, "the queue to empty")
            except ClusterError:
                pass
        for name, pid_file in (("slurmd", "slurmd.pid"), ("slurmctld", "slurmctld.pid"),
                               ("slurmdbd", "slurmdbd.pid"), ("mariadbd", "mariadb.pid"), ("munged", "munged.pid")):
            _terminate(_pid_of(self.root / pid_file, name))
        if self.mariadb is not None and self.mariadb.poll() is None:
            self.mariadb.kill()
            self.mariadb.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)

    # ---------------------------------------------------------------------------------------------- use
    def cli(self, *argv: str, check: bool = True, timeout: float = 30, ok_codes=(0,)) -> str | None:
        """Run a slurm command against this cluster; its stdout (None if it failed and check is False)."""
        try:
            proc = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            if check:
                raise
            return None
        if proc.returncode not in ok_codes:
            if check:
                raise ClusterError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
            return None
        return proc.stdout

    def queue_empty(self) -> bool:
        out = self.cli("squeue", "-h", check=False)
        return out is not None and not out.strip()

    def job(self, job_id: str) -> dict[str, str]:
        """`scontrol show job` as a dict (JobState, Restarts, ExitCode, ...); {} once the controller forgot it."""
        out = self.cli("scontrol", "-o", "show", "job", str(job_id), check=False) or ""
        return dict(field.split("=", 1) for field in out.split() if "=" in field)

    def job_state(self, job_id: str) -> str:
        return self.job(job_id).get("JobState", "")

    def wait(self, predicate, timeout: float, what: str, poll: float = 0.2):
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise ClusterError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.tails()}")
            time.sleep(poll)

    def tails(self, lines: int = 8) -> str:
        out = []
        for log in sorted(self.logs.glob("*.log")) if self.logs.is_dir() else []:
            text = log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {log.name}\n" + "\n".join(text))
        return "\n".join(out)


def _memory_mb() -> int:
    with open("/proc/meminfo") as f:
        total_kb = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
    return max(1024, int(total_kb / 1024 * 0.9))


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _pid_of(pid_file: Path, name: str) -> int | None:
    """The pid in `pid_file` if that process runs and is `name` (a pid file never kills a reused pid)."""
    try:
        pid = int(pid_file.read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return None
    return pid if name.encode() in cmdline else None


def _terminate(pid: int | None, grace: float = 10.0) -> None:
    if pid is None:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or _zombie(pid):
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def reap_orphans() -> None:
    """Stop the clusters of test sessions that died without stopping theirs (killed pytest)."""
    for root in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
        try:
            owner = int((root / "owner.pid").read_text())
        except (OSError, ValueError):
            owner = None
        if owner is not None and Path(f"/proc/{owner}").exists():
            continue
        if owner is None and time.time() - root.stat().st_mtime < 120:
            continue  # another session is creating it right now
        orphan = SlurmCluster(root, accounting=(root / "slurmdbd.conf").exists())
        orphan.stop()


# ------------------------------------------------------------------------------------------------ the fixture

_lock = threading.Lock()
_shared: dict = {"cluster": None, "users": 0, "error": None}


def acquire() -> SlurmCluster:
    """The session's cluster, started on first use (several modules importing the fixture share one)."""
    with _lock:
        if _shared["error"] is not None:
            raise ClusterError(_shared["error"])
        if _shared["cluster"] is None:
            reap_orphans()
            root = Path(tempfile.mkdtemp(prefix=PREFIX))
            cluster = SlurmCluster(root, accounting=not accounting_missing())
            try:
                cluster.start()
            except Exception as exc:
                cluster.stop()
                _shared["error"] = f"the SLURM cluster did not start: {exc}"
                raise ClusterError(_shared["error"]) from exc
            _shared["cluster"] = cluster
            atexit.register(_stop_at_exit)
        _shared["users"] += 1
        return _shared["cluster"]


def release() -> None:
    with _lock:
        _shared["users"] -= 1
        if _shared["users"] == 0 and _shared["cluster"] is not None:
            _shared["cluster"].stop()
            _shared["cluster"] = None


def _stop_at_exit() -> None:
    if _shared["cluster"] is not None:
        _shared["cluster"].stop()
        _shared["cluster"] = None


@pytest.fixture(scope="session")
def slurm_cluster():
    reason = why_unavailable()
    if reason is not None:
        skip_or_fail(reason)
    try:
        cluster = acquire()
    except ClusterError as exc:  # everything it needs is there, yet it did not start: a failure, not a skip
        pytest.fail(str(exc), pytrace=False)
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
        release()


def require_accounting(cluster: SlurmCluster) -> None:
    if not cluster.accounting:
        skip_or_fail(f"the cluster runs without job accounting (sacct): {', '.join(accounting_missing())} "
                     f"missing (`{INSTALL}`)")
