"""Memory of a measured block: resident memory of this process on the CPU (sampled), allocated
memory on a GPU; and handing freed memory back first, so that a block's peak is its own."""

from __future__ import annotations

import os
import threading
import time

import torch


def rss_bytes() -> int:
    """Resident set size of this process now."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def anon_bytes() -> int:
    """Anonymous resident memory of this process (its own allocations, not file pages such as
    a memory-mapped output); the resident set size where /proc does not say."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return rss_bytes()


def release_freed_memory() -> None:
    """Hand the memory that the C allocator (glibc's malloc) keeps after ``free`` back to the
    system, where it can (``malloc_trim``; elsewhere nothing is done)."""
    global _malloc_trim
    if _malloc_trim is None:
        import ctypes

        try:  # the C library's symbols, as this process has them
            _malloc_trim = ctypes.CDLL(None).malloc_trim
        except (OSError, AttributeError):  # not glibc: no such call
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim = None


class PeakMemory:
    """Peak memory above the starting point while the block runs.

    CUDA: ``torch.cuda.max_memory_allocated``. CPU: resident set size (``anon=True``: anonymous
    memory only, leaving out the pages of memory-mapped files) sampled every millisecond by a
    background thread (a sample can miss a peak shorter than that). On the CPU the C allocator
    first returns the memory it kept from earlier work (:func:`release_freed_memory`): reused,
    those pages would not grow the resident set, and a case measured after a larger one read
    less than half its working memory (LoftUp's second call at 448: 140 MB beyond its output
    instead of 340).
    """

    def __init__(self, device: str = "cpu", anon: bool = False) -> None:
        self.device = str(device)
        self.peak_bytes = 0
        self._read = anon_bytes if anon else rss_bytes

    def __enter__(self) -> PeakMemory:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize(self.device)  # the device timed, not the current one
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            release_freed_memory()
            self._base = self._read()
            self._peak = self._base
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, self._read())
            time.sleep(0.001)

    def __exit__(self, *exc) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device) - self._base
        else:
            self._stop.set()
            self._thread.join()
            self.peak_bytes = max(self._peak, self._read()) - self._base
