"""Shared test settings: one torch thread per process (the project's rule), fast profile on, and
Ctrl-C raising KeyboardInterrupt in every test."""

import os
import signal

import pytest

os.environ.setdefault("RLTEACH_FAST", "1")

import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def ctrl_c_raises_keyboard_interrupt():
    """The tests that interrupt a run send SIGINT to this process, as the kernel's ■ does to a
    kernel, which always handles it. A Python started as a background job of a non-interactive
    shell inherits SIGINT *ignored* instead; those tests would then wait for an interrupt that
    never comes. Install Python's own handler for the test, and put back what was there."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
