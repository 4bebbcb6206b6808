"""The training loop a PyTorch user would write, for ``rosetta bench overhead``.

Reads ``{"model": "mlp" | "lenet", "batch": B, "steps": N, "mode": "eager" |
"graph"}`` on stdin, trains N steps on random numpy data and emits the step-time
summary (``run``); ``rosetta bench`` takes the loop (``loop``) and runs it in
turns with the harness's step, in one process. Written as PyTorch's tutorials write it: an ``nn.Module``,
``optimizer.zero_grad(); loss.backward(); optimizer.step()``, and in graph mode
``torch.compile(model)``. Images are NCHW, transposed once up front.
"""

import json
import sys
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness.timing import step_summary
from harness.worker import emit


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.flatten = nn.Flatten()
        self.layers = nn.Sequential(
            nn.Linear(28 * 28, 512),
            nn.ReLU(),
            nn.Linear(512, 256),
            nn.ReLU(),
            nn.Linear(256, 128),
            nn.ReLU(),
            nn.Linear(128, 64),
            nn.ReLU(),
            nn.Linear(64, 10),
        )

    def forward(self, x):
        return self.layers(self.flatten(x))


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.fc = nn.Linear(20 * 4 * 4, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(torch.flatten(x, 1))


def loop(cfg: dict) -> Callable[[int], tuple[list[float], float]]:
    """``steps(k)``: train k more steps; each step's seconds and the last loss."""
    batch = cfg["batch"]
    torch.manual_seed(0)
    model = {"mlp": MLP, "lenet": LeNet}[cfg["model"]]()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    forward = torch.compile(model) if cfg["mode"] == "graph" else model

    rng = np.random.default_rng(0)
    x_all = rng.random((2048, 28, 28, 1), dtype=np.float32)
    x_all = np.ascontiguousarray(x_all.transpose(0, 3, 1, 2))  # NHWC -> NCHW, once
    y_all = rng.integers(0, 10, size=2048)  # int64, what cross_entropy takes
    per_epoch = len(x_all) // batch
    model.train()
    done = 0

    def steps(k: int) -> tuple[list[float], float]:
        nonlocal done
        times = []
        for i in range(done, done + k):
            start = (i % per_epoch) * batch  # the next slice in order, wrapping around
            t0 = time.perf_counter()
            x = torch.from_numpy(x_all[start : start + batch])
            y = torch.from_numpy(y_all[start : start + batch])
            optimizer.zero_grad()
            loss = loss_fn(forward(x), y)
            loss.backward()
            optimizer.step()
            last = loss.item()  # a host read: on a GPU it waits for the step
            times.append(time.perf_counter() - t0)
        done += k
        return times, last

    return steps


def run(cfg: dict) -> dict:
    """Train ``cfg["steps"]`` steps; the step-time summary."""
    times, last = loop(cfg)(cfg["steps"])
    return {**step_summary(times), "steps": len(times), "last_loss": last}


def main() -> None:
    emit("record", record=run(json.loads(sys.stdin.read())))


if __name__ == "__main__":
    main()
