"""Shared test settings: one torch thread per process (the project's rule), fast profile on."""

import os

os.environ.setdefault("RLTEACH_FAST", "1")

import torch  # noqa: E402

torch.set_num_threads(1)
