"""Run the whole platform in the foreground: Daphne plus the django-q2 clusters.

Ctrl-C (SIGINT) or SIGTERM stops every child and its workers; nothing is left behind.
If any child dies on its own, the others are stopped too and the command exits non-zero,
so a supervisor notices.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.management.base import BaseCommand

from config.demo import DEMO_USERS

STOP_GRACE_SECONDS = 20


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    process: subprocess.Popen | None = None


class Command(BaseCommand):
    help = "Serve HTTP + WebSockets with Daphne and run the background and training workers."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("LOOPDESK_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("LOOPDESK_PORT", 8000)))
        parser.add_argument(
            "--no-training-worker",
            action="store_true",
            help="Do not start the worker for the training cluster (e.g. it runs on a GPU box).",
        )

    def handle(self, *args, **options):
        host, port = options["host"], options["port"]
        base_env = {**os.environ, "DJANGO_SETTINGS_MODULE": os.environ["DJANGO_SETTINGS_MODULE"]}
        base_env.pop("Q_CLUSTER_NAME", None)
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        children = [
            Child(
                "web",
                [
                    sys.executable,
                    "-m",
                    "daphne",
                    "-b",
                    host,
                    "-p",
                    str(port),
                    "config.asgi:application",
                ],
                base_env,
            ),
            Child("worker", [*manage, "taskworker"], base_env),
        ]
        if not options["no_training_worker"]:
            children.append(
                Child(
                    "training-worker",
                    [*manage, "taskworker"],
                    {**base_env, "Q_CLUSTER_NAME": settings.TRAINING_CLUSTER},
                )
            )

        stopping = False

        def request_stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)

        for child in children:
            # Own session: a terminal Ctrl-C reaches only us, and we stop each group in order.
            child.process = subprocess.Popen(
                child.argv, env=child.env, cwd=settings.BASE_DIR, start_new_session=True
            )
            self.stdout.write(f"started {child.name} (pid {child.process.pid})")

        shown = "localhost" if host in ("127.0.0.1", "0.0.0.0") else host  # noqa: S104
        base = f"http://{shown}:{port}"
        self.stdout.write(
            self.style.SUCCESS("\nLoopdesk is running. Press Ctrl-C to stop.\n")
            + f"  Customer chat   {base}/\n"
            + f"  Agent console   {base}/agent/\n"
            + f"  Admin           {base}/admin/  (labeling, training, knowledge base)\n"
            + f"  API docs        {base}/api/docs/\n"
            + f"  Health          {base}/healthz\n"
            + "Demo logins (username / password):\n"
            + "".join(f"  {u.username:<11} {u.password:<20} {u.role}\n" for u in DEMO_USERS)
        )

        exit_code = 0
        while not stopping:
            for child in children:
                assert child.process is not None
                code = child.process.poll()
                if code is not None:
                    self.stderr.write(f"{child.name} exited with code {code}; stopping the rest")
                    exit_code = code or 1
                    stopping = True
                    break
            time.sleep(0.5)

        self.stdout.write("stopping ...")
        self._stop(children)
        self.stdout.write("stopped.")
        if exit_code:
            sys.exit(exit_code)

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
