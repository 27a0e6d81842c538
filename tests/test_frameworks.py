"""The fact conftest.py relies on: with triton imported first, TensorFlow and torch share a process."""

import subprocess
import sys

CODE = """
import triton
import numpy as np, keras
import torch, torchvision
from torch.utils.tensorboard import SummaryWriter
m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
m.compile("sgd", "mse")
m.fit(np.ones((8, 4)), np.ones((8, 2)), verbose=0)
torchvision.models.resnet18(num_classes=3)(torch.randn(2, 3, 32, 32)).sum().backward()
print("both frameworks ran")
"""


def test_tensorflow_and_torch_in_one_process_with_triton_first(tmp_path):
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "both frameworks ran" in out.stdout
