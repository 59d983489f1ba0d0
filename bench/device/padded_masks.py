#!/usr/bin/env python3
"""Inputs for `batchwise compare --inputs DIR` on BERT-style exports at b=64, seq 128 (session 49's masks, seed 49):
input_ids.npy and attention_mask.npy with 40 right-padded sequences (1..128 keys), 16 left-padded, 7 full and one
empty, so the engine's lengths path meets prefixes, items its own kernel computes, and an item with no key.
    python3 bench/device/padded_masks.py DIR"""
import os
import sys

import numpy as np

root = sys.argv[1]
rng = np.random.default_rng(49)
os.makedirs(root, exist_ok=True)
mask = np.ones((64, 128), dtype=np.int64)
for i in range(40):
    mask[i, rng.integers(1, 129):] = 0
for i in range(40, 56):
    mask[i, :rng.integers(1, 100)] = 0
mask[63, :] = 0
np.save(f"{root}/input_ids.npy", rng.integers(1000, 20000, size=(64, 128), dtype=np.int64))
np.save(f"{root}/attention_mask.npy", mask)
