"""Processes and the machine: installing the load generator, spawning pinned servers, RSS, versions."""

from __future__ import annotations

import http.client
import importlib.metadata
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar, Self

ROOT = Path(__file__).resolve().parent.parent
SERVER_CORE, LOAD_CORE = 0, 1


class BenchError(RuntimeError):
    """The benchmark cannot run; the message says why and what to do."""


# -- what the harness needs -----------------------------------------------------------------------------
def ensure_wrk() -> str:
    """Path of wrk, installed from Debian's packages when missing (needs root)."""
    return ensure_tool("wrk", "wrk")


def ensure_tool(command: str, package: str) -> str:
    """Path of `command`, installing Debian's `package` with apt-get when it is missing (needs root)."""
    found = shutil.which(command)
    if found:
        return found
    if os.geteuid() != 0:
        raise BenchError(f"{command} is not installed and this is not root: run `sudo apt-get install -y {package}` "
                         "first.")
    print(f"installing {package} (apt-get) ...", flush=True)
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]):
        subprocess.run(cmd, check=True, timeout=600, stdout=subprocess.DEVNULL,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    found = shutil.which(command)
    if not found:
        raise BenchError(f"apt-get installed {package} but {command} is not on PATH.")
    return found


def ensure_python_stack() -> None:
    """uvloop and httptools (uvicorn[standard]), which both servers run on."""
    try:
        import httptools  # noqa: F401
        import uvloop  # noqa: F401
    except ImportError:
        print("installing uvicorn[standard] (pip) ...", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "uvicorn[standard]"], check=True, timeout=600)
    if shutil.which("taskset") is None:
        raise BenchError("taskset (util-linux) is needed to pin the server and the load generator to cores.")
    if (os.cpu_count() or 1) < 2:
        raise BenchError("two cores are needed: one for the server, one for the load generator.")


def stemmock_command() -> list[str]:
    script = Path(sys.executable).parent / "stemmock"
    if script.exists():
        return [str(script)]
    found = shutil.which("stemmock")
    if found:
        return [found]
    raise BenchError("the `stemmock` command is not installed: run `pip install -e .` in the repository.")


# -- servers --------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A server process pinned to one core; stopped by its own pid only (`stop_all` stops any left running)."""

    running: ClassVar[list[Server]] = []

    def __init__(self, name: str, cmd: list[str], port: int, log_dir: Path, env: dict[str, str] | None = None,
                 core: int = SERVER_CORE) -> None:
        self.name, self.port = name, port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log_dir / f"{name}.log"
        self.started = time.perf_counter()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(["taskset", "-c", str(core), *cmd], cwd=ROOT, stdout=log,
                                         stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        Server.running.append(self)

    def wait_ready(self, path: str, headers: dict[str, str], timeout: float = 15.0, expect: int = 200) -> float:
        """Poll GET `path` in a tight loop until it answers `expect`; seconds since the process was spawned."""
        deadline = self.started + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.proc.returncode}; see {self.log}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", path, headers=headers)
                status = conn.getresponse().status
                conn.close()
                if status == expect:
                    return time.perf_counter() - self.started
            except OSError:
                pass
            time.sleep(0.002)
        raise BenchError(f"{self.name} did not answer {expect} on {path} within {timeout} s; see {self.log}")

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise BenchError(f"no VmRSS for {self.name}")

    def loaded(self, fragment: str) -> bool:
        """Whether a shared object whose path contains `fragment` is mapped (uvloop, httptools)."""
        return fragment in Path(f"/proc/{self.proc.pid}/maps").read_text()

    @classmethod
    def stop_all(cls) -> None:
        for server in list(cls.running):
            server.stop()

    def stop(self) -> None:
        if self in Server.running:
            Server.running.remove(self)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def run_json_child(module: str, args: list[str], timeout: float, core: int = SERVER_CORE) -> dict[str, Any]:
    """Run `python -m benchmarks.<module>` pinned to `core`; its last stdout line is a JSON result."""
    import json

    done = subprocess.run(["taskset", "-c", str(core), sys.executable, "-m", f"benchmarks.{module}", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise BenchError(f"benchmarks.{module} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# -- what was measured with ----------------------------------------------------------------------------------
def versions(wrk: str) -> dict[str, str]:
    out: dict[str, str] = {"python": platform.python_version()}
    for dist in ("stemmock", "starlette", "uvicorn", "uvloop", "httptools", "httpx", "aiohttp", "jsonschema-rs",
                 "orjson", "pyyaml", "anyio"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    first = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=10, check=False)
    out["wrk"] = (first.stdout + first.stderr).splitlines()[0].split(" Copyright")[0]
    out["kernel"] = platform.release()
    model = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
             if line.startswith("model name")]
    out["cpu"] = f"{model[0] if model else platform.machine()} x {os.cpu_count()}"
    out["load average at start"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return out


# -- noise: CPU used by anything else on the machine -----------------------------------------------------------
_TICK = os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds all cores have run tasks since boot (/proc/stat user + nice + system + steal).

    irq and softirq time are left out: the kernel charges them to no process, and under loopback load
    most of them are the benchmark's own packets."""
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + steal) / _TICK


def process_cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (a server's workers), from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        found.append(current := todo.pop())
        todo += parents.get(current, [])
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of `pid` and the processes below it, alive now."""
    return sum(process_cpu_seconds(p) for p in descendants(pid))


def own_cpu_seconds() -> float:
    """This process and its waited-for children (wrk runs, stopped servers, child benchmarks)."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class CpuWatch:
    """`with CpuWatch(server_pid) as w: ...` then `w.foreign_cores`: the average number of cores busy with
    anything but this harness, its children and `pids` (with the processes below them) during the block: other
    load on the machine."""

    def __init__(self, *pids: int) -> None:
        self.pids = pids
        self.foreign_cores = 0.0

    def _own(self) -> float:
        return own_cpu_seconds() + sum(tree_cpu_seconds(p) for p in self.pids)  # a server's workers are its own

    def __enter__(self) -> Self:
        self._t, self._busy, self._mine = time.perf_counter(), machine_busy_seconds(), self._own()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self._t
        foreign = (machine_busy_seconds() - self._busy) - (self._own() - self._mine)
        self.foreign_cores = max(0.0, foreign / wall) if wall > 0 else 0.0
