"""Keep a worker's resident memory near what it uses: fewer glibc malloc arenas.

Each Argon2id hash allocates its whole memory cost at once (ARGON2_MEMORY_COST_KIB, 19 MiB
by default) on whichever worker thread runs it, and frees it when done. glibc gives each
thread that contends for malloc an arena of its own, up to 8 per core, and memory freed in
an arena mostly stays resident for that arena's next use. After a burst of logins spread
over the 40 threads of a worker, each of up to 16 arenas kept its own 19 MiB blocks: a
worker sat at ~600 MB RSS (`make bench`, login scenario) although at most
PASSWORD_HASH_CONCURRENCY hashes ever run at once.

Capping the arenas at 2 makes the threads share them, so freed hash memory is reused
instead of multiplied. Measured on the 2-core machine (40 threads, 2 hashes at a time, 200
verifications): 357-376 MB RSS left afterwards with glibc's default, 91-110 MB with 2
arenas, and no slower (72-87 ms per hash against 90-95). Returning every block to the
system at once (a fixed M_MMAP_THRESHOLD) would keep RSS lowest (15 MB) but costs 30 % more
per hash in page faults, so it is not done. Nothing happens on other C libraries.
"""

import ctypes
import logging
import sys

logger = logging.getLogger(__name__)

_M_ARENA_MAX = -8  # <malloc.h>
ARENA_MAX = 2


def tune_malloc() -> bool:
    """Cap glibc's malloc arenas; False where the C library is not glibc (nothing done)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # noqa: B018 (only glibc has it)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    if not mallopt(_M_ARENA_MAX, ARENA_MAX):
        logger.warning("mallopt refused M_ARENA_MAX; RSS may grow after login bursts")
        return False
    return True
