"""`kill` (SIGTERM) stops `sdar train` like Ctrl-C: exit status 143, one line, and no process of the run left
behind (env workers here; a vLLM engine goes the same way, through the trainer's close())."""

import os
import signal
import subprocess
import sys
import time


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigterm_stops_the_run_and_its_env_workers(tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "SDAR_CACHE": str(tmp_path / "cache")}
    command = [
        sys.executable,
        "-m",
        "sdar.cli",
        "train",
        "toy",
        "--output",
        str(run_dir),
        "env.workers=1",
        "trainer.steps=200",
        "trainer.save_every=200",
        "trainer.eval_at_ends=false",
    ]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        metrics = run_dir / "metrics.jsonl"
        while not (metrics.exists() and metrics.read_text().strip()):  # step 1 done: the workers are up
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, "no step within 240 s"
            time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 128 + signal.SIGTERM
        assert "sdar train: terminated" in stderr
        deadline = time.monotonic() + 10
        while _group_alive(process.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _group_alive(process.pid), "a process of the run outlived it"
    finally:
        if _group_alive(process.pid):
            os.killpg(process.pid, signal.SIGKILL)
