"""Run the whole platform in the foreground: Daphne plus the django-q2 clusters.

It says what it is doing: the assistant provider and the port (and how to choose them),
when the web server answers, and how far the background embedding of the knowledge base
has got. Ctrl-C (SIGINT) or SIGTERM stops every child and its workers; nothing is left
behind. If any child dies on its own, the others are stopped too and the command exits
non-zero, so a supervisor notices.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import DatabaseError

from chat.selectors import articles_embedding_progress
from config.demo import DEMO_USERS

STOP_GRACE_SECONDS = 20
WEB_START_TIMEOUT_SECONDS = 120
EMBEDDING_PROGRESS_EVERY_SECONDS = 5.0
PROVIDER_CHOICES = "local, bedrock or hf"
APP = "config.asgi:application"


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    process: subprocess.Popen | None = None
    listener: socket.socket | None = None  # a listening socket the child inherits


class Command(BaseCommand):
    help = "Serve HTTP + WebSockets with Daphne and run the background and training workers."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=settings.RUN_HOST)
        parser.add_argument("--port", type=int, default=settings.RUN_PORT)
        parser.add_argument(
            "--web-processes",
            type=int,
            default=settings.WEB_PROCESSES,
            help="Daphne processes serving the port (one per core; needs the Redis layer).",
        )
        parser.add_argument(
            "--no-training-worker",
            action="store_true",
            help="Do not start the worker for the training cluster (e.g. it runs on a GPU box).",
        )

    def handle(self, *args, **options):
        host, port = options["host"], options["port"]
        if not self._port_free(host, port):
            self.stderr.write(
                f"Port {port} on {host} is already in use (is Loopdesk already running?). "
                "Choose another one, e.g. PORT=9000 scripts/run"
            )
            sys.exit(1)
        web_processes = options["web_processes"]
        layer = str(settings.CHANNEL_LAYERS["default"]["BACKEND"])
        if web_processes < 1 or (web_processes > 1 and layer.endswith("InMemoryChannelLayer")):
            self.stderr.write(
                "WEB_PROCESSES must be 1 with the in-memory channel layer (processes would "
                "not see each other's conversations); set REDIS_URL to run several."
                if web_processes > 1
                else "WEB_PROCESSES must be at least 1."
            )
            sys.exit(1)
        base_env = {**os.environ, "DJANGO_SETTINGS_MODULE": os.environ["DJANGO_SETTINGS_MODULE"]}
        base_env.pop("Q_CLUSTER_NAME", None)
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        daphne = [sys.executable, "-m", "daphne"]
        if web_processes == 1:
            webs = [Child("web", [*daphne, "-b", host, "-p", str(port), APP], base_env)]
        else:
            # One listening socket per process on the same port (SO_REUSEPORT): the
            # kernel spreads new connections over them; they share the Redis layer.
            webs = []
            for n in range(web_processes):
                listener = self._listen(host, port)
                webs.append(
                    Child(
                        f"web-{n + 1}",
                        [*daphne, "--fd", str(listener.fileno()), APP],
                        base_env,
                        listener=listener,
                    )
                )
        web = webs[0]
        workers = [Child("worker", [*manage, "taskworker"], base_env)]
        if not options["no_training_worker"]:
            workers.append(
                Child(
                    "training-worker",
                    [*manage, "taskworker"],
                    {**base_env, "Q_CLUSTER_NAME": settings.TRAINING_CLUSTER},
                )
            )
        children = [*webs, *workers]

        stopping = False

        def request_stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)

        self.stdout.write(
            f"==> assistant provider: {settings.ASSISTANT_PROVIDER} ({self._provider_said()}); "
            f"choose with ASSISTANT_PROVIDER={PROVIDER_CHOICES}"
        )
        if settings.DEBUG:
            self.stdout.write(
                self.style.WARNING(
                    "==> DEBUG is on (DJANGO_DEBUG=true): error pages show code and settings. "
                    "Never expose this server."
                )
            )
        self.stdout.write(
            f"==> starting the web server on {host}:{port} (choose the port with PORT=...)"
        )
        started = time.monotonic()
        for child in webs:
            self._start(child)
        if not self._wait_until_listening(web, host, port, lambda: stopping):
            if not stopping:
                self.stderr.write("the web server did not start; stopping")
            self._stop(children)
            sys.exit(0 if stopping else 1)
        self.stdout.write(f"    web server answering after {time.monotonic() - started:.1f}s")
        self.stdout.write("==> starting the background worker and the training worker")
        for child in workers:
            self._start(child)

        shown = "localhost" if host in ("127.0.0.1", "0.0.0.0") else host  # noqa: S104
        base = f"http://{shown}:{port}"
        self.stdout.write(
            self.style.SUCCESS("\nLoopdesk is running. Press Ctrl-C to stop.\n")
            + f"  Customer chat   {base}/  (customers sign in at {base}/accounts/login/)\n"
            + f"  Agent console   {base}/agent/\n"
            + f"  Admin           {base}/admin/  (labeling, training, knowledge base)\n"
            + f"  API docs        {base}/api/docs/\n"
            + f"  Health          {base}/healthz\n"
            + "Demo logins (username / password):\n"
            + "".join(f"  {u.username:<11} {u.password:<20} {u.role}\n" for u in DEMO_USERS)
        )

        exit_code = 0
        embedding = EmbeddingProgress(self.stdout.write)
        while not stopping:
            for child in children:
                assert child.process is not None
                code = child.process.poll()
                if code is not None:
                    self.stderr.write(f"{child.name} exited with code {code}; stopping the rest")
                    exit_code = code or 1
                    stopping = True
                    break
            embedding.report()
            time.sleep(0.5)

        self.stdout.write("stopping ...")
        self._stop(children)
        self.stdout.write("stopped.")
        if exit_code:
            sys.exit(exit_code)

    def _start(self, child: Child) -> None:
        # Own session: a terminal Ctrl-C reaches only us, and we stop each group in order.
        fds = () if child.listener is None else (child.listener.fileno(),)
        child.process = subprocess.Popen(
            child.argv, env=child.env, cwd=settings.BASE_DIR, start_new_session=True, pass_fds=fds
        )
        if child.listener is not None:
            child.listener.close()  # the child holds it now
        self.stdout.write(f"    started {child.name} (pid {child.process.pid})")

    @staticmethod
    def _provider_said() -> str:
        provider = settings.ASSISTANT_PROVIDER
        if provider == "local":
            return "offline: quotes the help articles, MiniLM retrieval + VADER"
        if provider == "bedrock":
            return f"Amazon Bedrock, {settings.BEDROCK_MODEL_ID}"
        if provider == "hf":
            return f"local model {settings.HF_BASE_MODEL_PATH} + the deployed LoRA adapter"
        return "unknown provider"

    @staticmethod
    def _listen(host: str, port: int) -> socket.socket:
        listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind((host, port))
        listener.listen(1024)
        return listener

    @staticmethod
    def _port_free(host: str, port: int) -> bool:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            try:
                probe.bind((host, port))
            except OSError:
                return False
        return True

    @staticmethod
    def _wait_until_listening(child: Child, host: str, port: int, stopping) -> bool:
        """True once the web server answers HTTP; False if it died or we are stopping.
        (An HTTP answer, not a TCP connect: a listening socket handed to the processes
        accepts connections before any of them serves.)"""
        import http.client

        target = "127.0.0.1" if host == "0.0.0.0" else host  # noqa: S104
        deadline = time.monotonic() + WEB_START_TIMEOUT_SECONDS
        while time.monotonic() < deadline and not stopping():
            assert child.process is not None
            if child.process.poll() is not None:
                return False
            probe = http.client.HTTPConnection(target, port, timeout=2)
            try:
                probe.request("GET", "/healthz")
                probe.getresponse()
                return True
            except (OSError, http.client.HTTPException):
                pass
            finally:
                probe.close()
            time.sleep(0.2)
        return False

    def _stop(self, children: list[Child]) -> None:
        for child in children:
            if child.process and child.process.poll() is None:
                # Only the leader: a django-q2 cluster stops its own workers in order.
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for child in children:
            if child.process is None:
                continue
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.stderr.write(f"{child.name} did not stop in time; killing it")
            # Workers forked by a cluster share its process group: make sure none survive.
            self._signal_group(child, signal.SIGKILL)
            child.process.wait()

    @staticmethod
    def _signal_group(child: Child, sig: int) -> None:
        assert child.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.process.pid, sig)


class EmbeddingProgress:
    """Prints how far the background embedding of the knowledge base has got, until done.

    The worker embeds new and edited articles after startup (the first time the model
    loads, this takes a while); the assistant only cites articles already embedded.
    """

    def __init__(self, write) -> None:
        self.write = write
        self.last_check = 0.0
        self.last_said: tuple[int, int] | None = None
        self.done = False

    def report(self) -> None:
        now = time.monotonic()
        if self.done or now - self.last_check < EMBEDDING_PROGRESS_EVERY_SECONDS:
            return
        self.last_check = now
        try:
            embedded, total = articles_embedding_progress()
        except DatabaseError:  # a busy database must not stop the platform: ask again later
            return
        if embedded >= total:
            self.done = True
            if self.last_said is not None:  # say nothing when it was all done already
                self.write(f"==> knowledge base ready: {total} articles embedded")
            return
        if self.last_said is None:
            self.write(
                f"==> embedding the knowledge base in the background "
                f"({total - embedded} of {total} articles to do)"
            )
        elif (embedded, total) != self.last_said:
            self.write(f"    knowledge base: {embedded} of {total} articles embedded")
        self.last_said = (embedded, total)
