"""The launch recipes of examples/launch (docs/scaling.md): they parse, their sdar settings are valid config,
and the one-machine accelerate config launches a sharded run here (2 CPU processes instead of 8 GPUs)."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from sdar.config import load_config

RECIPES = Path(__file__).resolve().parent.parent / "examples" / "launch"


@pytest.mark.parametrize(
    ("name", "processes", "machines"), [("accelerate_1node", 8, 1), ("accelerate_2nodes", 16, 2)]
)
def test_accelerate_configs_load_with_accelerate(name, processes, machines):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(RECIPES / f"{name}.yaml"))
    assert (config.num_processes, config.num_machines) == (processes, machines)
    assert str(config.mixed_precision) == "no"  # sdar's own trainer.autocast_bf16 decides precision


def test_slurm_script_is_valid_bash_and_its_settings_are_valid_config():
    script = RECIPES / "slurm_2nodes.sbatch"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    preset = re.search(r"PRESET=\$\{PRESET:-([\w.-]+)\}", text).group(1)
    settings = shlex.split(re.search(r"SETTINGS=\((.*)\)", text).group(1))
    config = load_config(preset, settings)
    assert config.trainer.sharding == "fsdp" and config.env.executor == "ray"
    assert "--config_file examples/launch/accelerate_2nodes.yaml" in text


@pytest.mark.slow
def test_the_one_machine_recipe_launches_a_sharded_run(tmp_path):
    pytest.importorskip("alfworld")
    import os
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    launcher = [sys.executable, "-m", "accelerate.commands.launch"]
    launcher += ["--config_file", str(RECIPES / "accelerate_1node.yaml"), "--num_processes", "2"]
    launcher += ["--main_process_port", str(port)]
    train = ["-m", "sdar.cli", "train", "smoke", "trainer.sharding=fsdp", "rollout.tasks_per_step=2"]
    train += ["rollout.group_size=2", "env.max_turns=2", "trainer.steps=1", "rollout.max_new_tokens=8"]
    train += ["trainer.eval_at_ends=false", "--output", str(tmp_path / "run")]
    result = subprocess.run([*launcher, *train], env=environment, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / "run" / "checkpoints" / "step_000001" / "optimizer").is_dir()
