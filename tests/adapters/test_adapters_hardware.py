"""CPU feature detection and the bf16 switch."""

from __future__ import annotations

import ctypes
import platform
from pathlib import Path

import pytest
import torch

from deskpilot.adapters import hardware


def _proc_flags() -> set[str]:
    path = Path("/proc/cpuinfo")
    if not path.is_file():
        return set()
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def test_bf16_setting_on_and_off_are_obeyed() -> None:
    assert hardware.use_bf16("off") is False
    assert hardware.use_bf16("on") is True
    assert hardware.use_bf16("off", device="cuda") is False
    assert hardware.use_bf16("on", device="cuda:0") is True


def test_auto_follows_the_cpu() -> None:
    assert hardware.use_bf16("auto") is hardware.cpu_has_fast_bf16()
    assert hardware.use_bf16() is hardware.cpu_has_fast_bf16()


def test_auto_on_cuda_asks_torch() -> None:
    expected = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    assert hardware.use_bf16("auto", device="cuda") is expected


def test_fast_bf16_agrees_with_proc_cpuinfo() -> None:
    flags = _proc_flags()
    assert hardware.cpu_flags() == frozenset(flags)
    assert hardware.cpu_has_fast_bf16() == bool({"amx_bf16", "avx512_bf16"} & flags)


def test_configure_threads_sets_and_restores(monkeypatch: pytest.MonkeyPatch) -> None:
    previous = torch.get_num_threads()
    try:
        assert hardware.configure_threads(0) == 1  # clamped to at least one
        assert torch.get_num_threads() == 1
        assert hardware.configure_threads(2) == 2
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)


def test_cpu_model_is_a_name() -> None:
    assert isinstance(hardware.cpu_model(), str)


# In a fresh interpreter (the setting is process-wide): malloc and free one 16 MB block, then
# print (MB mapped directly while it lived, MB the heap keeps free after it is freed).
_ONE_BLOCK = """
import ctypes, sys

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd",
        "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "tuned":
    from deskpilot.adapters.hardware import tune_malloc
    assert tune_malloc()
block = libc.malloc(16 << 20)
mapped = libc.mallinfo2().hblkhd
libc.free(block)
print(mapped >> 20, libc.mallinfo2().fordblks >> 20)
"""


def _one_block(mode: str) -> tuple[int, int]:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _ONE_BLOCK, mode], capture_output=True, text=True, check=True)
    mapped, kept = out.stdout.split()
    return int(mapped), int(kept)


def _has_mallinfo2() -> bool:
    try:
        return platform.libc_ver()[0] == "glibc" and hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")
    except OSError:
        return False


@pytest.mark.skipif(not _has_mallinfo2(), reason="glibc >= 2.33 only")
def test_tuned_malloc_keeps_freed_blocks_for_the_next_pass() -> None:
    # glibc's default maps a 16 MB block straight from the OS and unmaps it on free (the next
    # pass faults its pages in again); tuned, it comes from the heap, which keeps it once freed
    mapped, kept = _one_block("default")
    assert mapped == 16
    assert kept < 16
    mapped, kept = _one_block("tuned")
    assert mapped == 0
    assert kept >= 16


def test_tune_malloc_declines_off_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    hardware.tune_malloc.cache_clear()
    monkeypatch.setattr(hardware.platform, "libc_ver", lambda: ("musl", "1.2"))
    try:
        assert hardware.tune_malloc() is False
    finally:
        hardware.tune_malloc.cache_clear()
