"""One writer: leader election on a coordination.k8s.io Lease.

Every `quantbench operator` process (each Helm release's, a local one beside it) competes for the same Lease
(``<lease_namespace>/quantbench-operator``); only its holder reconciles. The holder renews it every
``renew_s``; it counts itself leader only while its last renewal is younger than ``duration_s`` minus a
margin, so a paused or partitioned holder stops acting before another may take over. A process that is not
the leader keeps watching (its liveness endpoint stays up) and takes over once the Lease expires.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from quantbench.kube import ApiError, Kube

log = logging.getLogger(__name__)
LEASE_NAME = "quantbench-operator"
LEASE_PATH = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
MARGIN_S = 2.0


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _stamp(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def may_take(spec: dict[str, Any], me: str, now: datetime) -> bool:
    """Whether ``me`` may hold the Lease with ``spec`` now: it holds it already, nobody does, or the holder
    has not renewed it within its duration."""
    holder = spec.get("holderIdentity")
    if not holder or holder == me:
        return True
    renewed = _time(spec.get("renewTime")) or _time(spec.get("acquireTime"))
    duration = float(spec.get("leaseDurationSeconds") or 15)
    return renewed is None or now > renewed + timedelta(seconds=duration)


def identity() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class LeaderElector:
    def __init__(
        self,
        kube: Kube,
        namespace: str,
        duration_s: float = 15.0,
        renew_s: float = 5.0,
        me: str | None = None,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.duration_s = duration_s
        self.renew_s = renew_s
        self.me = me or identity()
        self._renewed_at: float | None = None  # monotonic time of the last successful acquire or renewal
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def path(self) -> str:
        return LEASE_PATH.format(namespace=self.namespace)

    def is_leader(self) -> bool:
        renewed = self._renewed_at
        return renewed is not None and time.monotonic() - renewed < self.duration_s - MARGIN_S

    def try_acquire(self) -> bool:
        """One attempt to take or renew the Lease; whether this process holds it now."""
        now = datetime.now(UTC)
        started = time.monotonic()
        try:
            lease = self.kube.request("GET", f"{self.path}/{LEASE_NAME}")
        except ApiError as exc:
            if exc.status != 404:
                raise
            lease = None
        spec = {
            "holderIdentity": self.me,
            "leaseDurationSeconds": int(self.duration_s),
            "renewTime": _stamp(now),
        }
        try:
            if lease is None:
                body = {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": LEASE_NAME, "namespace": self.namespace},
                    "spec": {**spec, "acquireTime": _stamp(now), "leaseTransitions": 0},
                }
                self.kube.request("POST", self.path, body=body)
            else:
                current = lease.get("spec") or {}
                if not may_take(current, self.me, now):
                    self._renewed_at = None
                    return False
                taking = current.get("holderIdentity") != self.me
                transitions = int(current.get("leaseTransitions") or 0) + (1 if taking else 0)
                acquired = _stamp(now) if taking else current.get("acquireTime", _stamp(now))
                lease["spec"] = {**current, **spec, "acquireTime": acquired, "leaseTransitions": transitions}
                # resourceVersion in the body: a concurrent taker makes this a 409, never two holders.
                self.kube.request("PUT", f"{self.path}/{LEASE_NAME}", body=lease)
                if taking:
                    log.info("took the lease %s/%s as %s", self.namespace, LEASE_NAME, self.me)
        except ApiError as exc:
            if exc.status != 409:
                raise
            self._renewed_at = None
            return False
        self._renewed_at = started
        return True

    def _loop(self) -> None:
        while not self._stop.is_set():
            was = self.is_leader()
            try:
                held = self.try_acquire()
            except Exception as exc:  # the API is unreachable: leadership lapses on its own
                log.warning("lease %s/%s: %s", self.namespace, LEASE_NAME, exc)
                held = self.is_leader()
            if was and not held:
                log.warning("lost the lease %s/%s: another operator acts now", self.namespace, LEASE_NAME)
            self._stop.wait(self.renew_s if held else self.renew_s / 2)

    def start(self) -> LeaderElector:
        self._thread = threading.Thread(target=self._loop, name="leader-election", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop renewing and give the Lease up, so another operator takes over at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._renewed_at is None:
            return
        self._renewed_at = None
        try:
            lease = self.kube.request("GET", f"{self.path}/{LEASE_NAME}")
            if (lease.get("spec") or {}).get("holderIdentity") == self.me:
                lease["spec"]["holderIdentity"] = None
                self.kube.request("PUT", f"{self.path}/{LEASE_NAME}", body=lease)
        except Exception as exc:
            log.warning("could not release the lease %s/%s: %s", self.namespace, LEASE_NAME, exc)
