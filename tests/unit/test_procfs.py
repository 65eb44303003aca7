"""The CPU time the benchmarks read of processes, as the kernel counts it."""

import os
import subprocess
import sys

from controlplane.bench.procfs import cpu_times, processes_cpu_seconds


def test_the_cpu_of_processes_is_their_user_and_system_time_together() -> None:
    before_user, before_system = cpu_times([os.getpid()])
    sum(i * i for i in range(3_000_000))
    user, system = cpu_times([os.getpid()])
    assert user > before_user
    assert system >= before_system
    assert processes_cpu_seconds([os.getpid()]) >= user + system


def test_a_process_gone_counts_nothing() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert cpu_times([child.pid]) == (0.0, 0.0)
