import platform
import subprocess
import sys

import pytest

from app.api.memory import tune_malloc

# 40 threads, 2 at a time, each allocating, touching and freeing a 19 MiB block three times
# (an Argon2 hash's memory): prints how much the process's RSS grew and kept.
_PROBE = """
import ctypes, sys, threading
if sys.argv[1] == "tuned":
    from app.api.memory import tune_malloc
    assert tune_malloc()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
size = 19 * 1024 * 1024
def rss():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) * 1024
two = threading.Semaphore(2)
def hash_like():
    with two:
        for _ in range(3):
            block = libc.malloc(size)
            libc.memset(block, 1, size)
            libc.free(block)
before = rss()
threads = [threading.Thread(target=hash_like) for _ in range(40)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(rss() - before)
"""


def _rss_kept(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True
    )
    return int(done.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_hash_memory_freed_on_many_threads_is_not_kept_per_thread() -> None:
    assert tune_malloc() is True
    mib = 1024 * 1024
    # The probe can tell: with glibc's default arenas it keeps one block per arena (seen:
    # 320-340 MiB); with 2 arenas 40-115 MiB, depending on how the threads overlapped.
    untuned = _rss_kept("untuned")
    assert untuned > 150 * mib
    assert _rss_kept("tuned") < untuned / 2
