"""Test-wide settings: never touch the network, keep caches inside the test session."""

import os

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# On 2 cores shared with other work, torch's default intra-op threads slow small ops ~20x (measured).
torch.set_num_threads(1)
