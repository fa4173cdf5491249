"""Resident memory and CPU time of a running process, read from Linux /proc."""

import os
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Usage:
    """A process's peak resident set (MiB) and CPU seconds (user + system) so far."""

    rss_mib: float
    peak_rss_mib: float
    cpu_s: float
    system_s: float = 0.0
    """Of ``cpu_s``, the time spent in the kernel on the process's behalf (sockets, futexes, page faults)."""


def usage(pid: int) -> Usage:
    """Read /proc/<pid>/status and /proc/<pid>/stat."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    rss_kib = int(fields["VmRSS"].split()[0])
    hwm_kib = int(fields["VmHWM"].split()[0])
    stat = Path(f"/proc/{pid}/stat").read_text()
    after_name = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(after_name[11]), int(after_name[12])
    return Usage(rss_kib / 1024, hwm_kib / 1024, (utime + stime) / _TICKS, stime / _TICKS)
