"""Workloads that end the process they run in, for the worker-isolation tests. Registered in worker
processes through a real entry point (tests/test_worker.py writes a ``*.dist-info`` with an
``accelbench.workloads`` entry naming this module); never imported by the test process itself."""

from __future__ import annotations

import ctypes
import os
import signal
import time
from typing import Any

from pydantic import Field

from accelbench.workloads.base import Params, register
from tests.workloads_for_tests import TScale


class CrashParams(Params):
    n: int = Field(64, gt=0)
    dtype: str = "float32"
    how: str = Field("segv", pattern="^(segv|exit|sigkill|hang|print)$")


@register
class TCrash(TScale):
    """Validates, then ends its process in ``run`` as native code can: a segfault (a NULL read), a hard
    ``os._exit(3)``, SIGKILL (what the kernel's OOM killer sends), or a hang that SIGALRM cannot interrupt
    (the signal is blocked, as it is in effect inside a long C call); ``print`` writes to stdout."""

    name = "t_crash"
    Params = CrashParams  # type: ignore[assignment]
    _runs = 0

    def run(self) -> None:
        super().run()
        self._runs += 1
        if self._runs < 2:  # the first run is the validated one; the timed ones crash
            return
        how = self.p.how
        if how == "segv":
            ctypes.string_at(0)
        elif how == "exit":
            os._exit(3)
        elif how == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif how == "hang":
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
            time.sleep(3600)
        elif how == "print":
            print("a workload's chatter must not break the protocol")

    def reference(self) -> Any:
        return super().reference()
