"""Run a django-q2 cluster that stops cleanly on SIGTERM / SIGINT.

``manage.py qcluster`` stops the cluster from inside its signal handler, which can
deadlock on the stop event's lock (django-q2 issue #346): the cluster logs "stopping"
and hangs until it is killed. Here the handler only sets a flag and the main thread
stops the cluster. Set ``Q_CLUSTER_NAME=training`` to run the training cluster.
"""

from __future__ import annotations

import signal
import time

from django.core.management.base import BaseCommand
from django_q.cluster import Cluster


class Command(BaseCommand):
    help = "Start a django-q2 cluster (Q_CLUSTER_NAME picks an alternative cluster)."

    def handle(self, *args, **options):
        cluster = Cluster()
        stop_requested = False

        def request_stop(signum, frame):
            nonlocal stop_requested
            stop_requested = True  # a plain assignment is safe in signal context

        # Cluster() installed its own handlers; replace them before starting.
        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        cluster.start()
        while not stop_requested and cluster.sentinel.is_alive():
            time.sleep(0.2)
        cluster.stop()
