"""torch.profiler summaries for the benches' reports: where the time of a timed piece of work
goes, on the host (launches, Python) and on the device (kernels)."""

from __future__ import annotations

import torch

SELF_TIME = {"cpu": "self_cpu_time_total", "device": "self_device_time_total"}  # microseconds


def activities() -> list[torch.profiler.ProfilerActivity]:
    """The host, and the GPU where there is one."""
    found = [torch.profiler.ProfilerActivity.CPU]
    if torch.cuda.is_available():
        found.append(torch.profiler.ProfilerActivity.CUDA)
    return found


def self_seconds(profile: torch.profiler.profile, on: str = "cpu") -> float:
    """The self time of every op on ``on`` ("cpu" or "device"), summed, in seconds."""
    return sum(getattr(e, SELF_TIME[on]) for e in profile.key_averages()) / 1e6


def top_ops(profile: torch.profiler.profile, n: int = 5, on: str = "cpu") -> list[str]:
    """Markdown rows: the ``n`` torch ops with the most self time on ``on``, as shares of it."""
    events = profile.key_averages()
    time = SELF_TIME[on]
    total = sum(getattr(e, time) for e in events) or 1.0
    top = sorted(events, key=lambda e: getattr(e, time), reverse=True)[:n]
    return [f"| {e.key} | {100 * getattr(e, time) / total:.1f}% |" for e in top]
