"""The rollout's turn limit: RolloutSettings.max_turns, or when None the env's (EnvSpec.default_max_turns)."""

import dataclasses

import pytest

from sdar.config import Config, ModelConfig
from sdar.env_records import StepResult, Task
from sdar.envs import get_env_spec
from sdar.envs.pool import EnvPool
from sdar.models import load_model
from sdar.models.generation import Generation
from sdar.rollout.engine import RolloutSettings, collect_episodes


class EndlessEnv:
    """Never done: only the turn limit ends an episode."""

    def task_ids(self, split):
        return ["t-0"]

    def reset(self, task_id):
        return Task(task_id, "key", "open the chest"), StepResult("A room.", admissible_actions=("look",))

    def step(self, action):
        return StepResult("Nothing happens.", admissible_actions=("look",))

    def expert_action(self):
        return "look"

    def close(self):
        pass


class LookBackend:
    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def generate(self, prompts, **options):
        text = "<think>ok</think><action>look</action>"
        ids = self.tokenizer(text, add_special_tokens=False).input_ids
        return [Generation(ids, [-1.0] * len(ids), text, "stop") for _ in prompts]


@pytest.mark.parametrize(("max_turns", "turns"), [(None, 3), (2, 2)])
def test_the_episode_ends_at_settings_max_turns_or_else_at_the_envs_limit(max_turns, turns):
    spec = dataclasses.replace(get_env_spec("toy"), name="endless", factory=EndlessEnv, default_max_turns=3)
    _, tokenizer = load_model(ModelConfig(name="tiny"))
    settings = RolloutSettings(group_size=1, max_turns=max_turns, max_new_tokens=16, max_prompt_tokens=2048)
    with EnvPool(EndlessEnv, num_slots=1, num_workers=0) as pool:
        rollout = collect_episodes(pool, spec, LookBackend(tokenizer), tokenizer, ["t-0"], settings)
    assert [len(episode.turns) for episode in rollout.episodes] == [turns]


def test_an_unresolved_configs_settings_leave_the_limit_to_the_env():
    assert RolloutSettings.from_config(Config()).max_turns is None
    with pytest.raises(ValueError, match="max_turns and max_new_tokens must be >= 1"):
        RolloutSettings(max_turns=0)
