"""CPU feature detection and the bf16 switch."""

from __future__ import annotations

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
