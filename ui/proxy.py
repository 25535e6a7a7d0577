"""Serves the app from N Streamlit processes behind nginx: ``python -m ui.proxy --workers N``
(``make run WORKERS=N``).

Why: one Streamlit process runs every session's script under one interpreter lock, so a class
waits in one line however many cores the machine has. Here each process (:func:`ui.serve.launch`,
warm-up included) serves its share of the students; nginx (``apt-get install nginx``, or
``make system-deps``) spreads them. Everything shared lives on disk: runs, stored results and
the training queue (:mod:`core.jobs`), so a student may land on any process.

Stickiness: a Streamlit session lives in one process (its websocket, its uploads, its images
under ``/media``), so every request of a browser must reach the same process. nginx gives
each browser a ``layerscope_id`` cookie (its first request's id) and hashes it onto the
processes (``hash ... consistent``); WebSocket upgrade headers pass through.

What can go wrong: a process dies: nginx sends its students' reconnects to another process
(``proxy_next_upstream``); the frontend reconnects on its own and reruns the page its URL names,
so the view is kept (the URL holds it) but session-only state (an uploaded image) is not. A
dead process is not restarted: its students now live elsewhere, and a restarted one would take
back their image requests from the process holding their sessions. Restart the whole command
to restore capacity. Each process costs its own memory (see the README, "Performance"), and
gets its share of the cores for torch (``OMP_NUM_THREADS``), so N processes computing at once
do not fight over them.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from core.threads import threads_per_process
from ui.serve import free_port, launch

COOKIE = "layerscope_id"
NGINX_CONF = """\
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
daemon off;
events {{ worker_connections 4096; }}
http {{
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    log_format upstream '$student|$upstream_addr|$status|$request';
    access_log {dir}/access.log upstream;
    client_max_body_size 200m;
    map $cookie_{cookie} $student {{ "" $request_id; default $cookie_{cookie}; }}
    map $http_upgrade $connection_upgrade {{ default upgrade; "" close; }}
    upstream streamlit {{
        hash $student consistent;
{servers}
    }}
    server {{
        listen {address}:{port};
        location / {{
            add_header Set-Cookie "{cookie}=$student; Path=/; HttpOnly; SameSite=Lax" always;
            proxy_pass http://streamlit;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_read_timeout 86400s;
            proxy_buffering off;
            proxy_next_upstream error timeout http_502 http_503;
            proxy_connect_timeout 2s;
        }}
    }}
}}
"""


def nginx_config(folder: Path, address: str, port: int, backends: list[int]) -> str:
    """nginx's configuration: ``address:port`` in front of the processes on ``backends``."""
    servers = "\n".join(
        f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=30s;" for p in backends
    )
    return NGINX_CONF.format(dir=folder, cookie=COOKIE, servers=servers, address=address, port=port)


class Cluster:
    """N app processes and nginx in front of them; :meth:`stop` ends them all.

    Attributes:
        port: where students connect (nginx).
        backends: each app process's port, in upstream order.
        servers: the app processes.
        folder: nginx's configuration, logs (``access.log`` names each request's process).
    """

    def __init__(
        self,
        workers: int,
        port: int,
        address: str = "127.0.0.1",
        env: dict[str, str] | None = None,
        log_dir: Path | None = None,
    ) -> None:
        nginx = shutil.which("nginx")
        if nginx is None:
            raise RuntimeError(
                "nginx is not installed: `sudo apt-get install nginx` (or `make system-deps`)."
            )
        self.port = port
        self.folder = Path(tempfile.mkdtemp(prefix="layerscope-nginx-"))
        self.backends = [free_port() for _ in range(workers)]
        self.servers: list[subprocess.Popen] = []
        self.nginx: subprocess.Popen | None = None
        shared = {
            # torch's threads in each process: the cores split between them, unless set
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(threads_per_process(workers))),
            **(env or {}),
            "STREAMLIT_SERVER_COOKIE_SECRET": secrets.token_hex(16),
        }
        logs = log_dir or self.folder
        try:
            for i, backend in enumerate(self.backends):
                with (logs / f"server-{i}.log").open("wb") as log:
                    self.servers.append(launch(backend, env=shared, log=log, timeout=180))
            conf = self.folder / "nginx.conf"
            conf.write_text(nginx_config(self.folder, address, port, self.backends))
            self.nginx = subprocess.Popen(
                [nginx, "-c", str(conf), "-p", str(self.folder), "-e", str(self.folder / "e.log")],
                stdout=subprocess.DEVNULL,
                stderr=(self.folder / "nginx.out").open("wb"),
            )
            self._wait_healthy(address)
        except BaseException:
            self.stop()
            raise

    def _wait_healthy(self, address: str, timeout: float = 30) -> None:
        host = "127.0.0.1" if address in ("0.0.0.0", "::") else address
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.nginx is not None and self.nginx.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"http://{host}:{self.port}/_stcore/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        errors = (self.folder / "nginx.out").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"nginx did not come up on port {self.port}: {errors}")

    def backend_of(self, student: str) -> int | None:
        """The port of the process that served ``student``'s (cookie's) last request."""
        found = None
        for line in (self.folder / "access.log").read_text().splitlines():
            who, upstream, *_ = line.split("|")
            if who == student and upstream != "-":  # "a:1, b:2" after a failover: the last
                found = int(upstream.split(",")[-1].strip().rsplit(":", 1)[1])
        return found

    def stop(self) -> None:
        """Stops nginx and every app process (and their children: fit workers)."""
        if self.nginx is not None and self.nginx.poll() is None:
            self.nginx.send_signal(signal.SIGQUIT)
            try:
                self.nginx.wait(10)
            except subprocess.TimeoutExpired:
                self.nginx.kill()
        for server in self.servers:
            if server.poll() is None:
                server.terminate()
        for server in self.servers:
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
        shutil.rmtree(self.folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="Streamlit processes")
    parser.add_argument("--address", default="127.0.0.1", help="where nginx listens")
    parser.add_argument("--port", type=int, default=8501, help="where nginx listens")
    args = parser.parse_args()
    cluster = Cluster(args.workers, args.port, args.address)
    print(
        f"layerscope: http://{args.address}:{args.port} → {args.workers} Streamlit processes "
        f"(ports {', '.join(map(str, cluster.backends))}); logs in {cluster.folder}. "
        "Ctrl+C stops.",
        flush=True,
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    alive = set(range(args.workers))
    try:
        while True:
            time.sleep(2)
            for i in sorted(alive):
                if cluster.servers[i].poll() is not None:
                    alive.discard(i)
                    print(
                        f"process {i} (port {cluster.backends[i]}) exited: its students "
                        f"reconnect to the {len(alive)} others.",
                        file=sys.stderr,
                        flush=True,
                    )
            if not alive:
                sys.exit("every app process has exited")
    except KeyboardInterrupt:
        pass
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
