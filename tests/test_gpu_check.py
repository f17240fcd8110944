"""`make gpu-check` in its CPU mode (what CI can run): the script skips CUDA with a clear
message, still builds a store from the shared clips and runs its measurement code (2 steps
of the tiny configuration), and exits 0."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO, SHARED_DATA


def test_gpu_check_without_cuda_says_so_runs_its_code_on_the_cpu_and_passes(real_dir, tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "COMODE_SHARED_DATA": str(SHARED_DATA)}
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--work", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    out = result.stdout
    assert "no CUDA device: the CUDA checks are SKIPPED" in out
    assert "store: 4 videos linked to 1 extracted shared clip(s)" in out
    assert "batches from memory:" in out and "0 DataLoader workers:" in out and "waiting for data" in out
    assert out.rstrip().endswith("gpu-check: CPU mode OK (CUDA skipped)")
