"""Environments: the TextEnv protocol, the registry, and the envs this package ships.

spec = get_env_spec("alfworld-gen")
env = make_env(config.env)                 # one env in this process
factory = env_factory(config.env)          # picklable zero-argument factory, for EnvPool workers
"""

from __future__ import annotations

from functools import partial

from sdar.env_records import StepResult, Task
from sdar.envs.alfworld.engine import TASK_TYPES
from sdar.envs.alfworld.env import admits as alfworld_admits
from sdar.envs.alfworld.generated import make_generated_env
from sdar.envs.alfworld.prompts import build_alfworld_prompt, template_prompt
from sdar.envs.base import ENVS, EnvSpec, TextEnv, get_env_spec, register_env, turn_limit
from sdar.envs.registry import alfworld_engine_missing, check_alfworld, make_alfworld_env
from sdar.envs.replies import parse_action_reply
from sdar.envs.search_qa import SEARCH_QA_SPEC
from sdar.envs.toy import TOY_SPEC
from sdar.envs.webshop import WEBSHOP_SPECS
from sdar.errors import ConfigError

ACTION_STOP = ("</action>",)
# ALFWorld's turn limit in the paper's protocol (docs/method.md §6); generated games are solvable by the
# planner within env.options.max_expert_steps (15 by default), well inside it.
ALFWORLD_MAX_TURNS = 50


def _alfworld_spec(name: str, factory, description: str, check, **fields) -> EnvSpec:
    """Both ALFWorld envs share the prompt, the reply format and the skill library."""
    return EnvSpec(
        **fields,
        name=name,
        factory=factory,
        description=description,
        build_prompt=build_alfworld_prompt,
        parse_reply=parse_action_reply,
        stop_strings=ACTION_STOP,
        skill_library="alfworld",
        task_types=TASK_TYPES,
        requires="alfworld",
        check=check,
        admits=alfworld_admits,
        default_max_turns=ALFWORLD_MAX_TURNS,
    )


def _generator_options(env_config) -> dict:
    """alfworld-gen reads no data folder: env.options are its game generator's settings, as one mapping."""
    return {"options": dict(env_config.options)}


register_env(
    _alfworld_spec(
        "alfworld",
        make_alfworld_env,
        "ALFWorld household text games, official json_2.1.1 splits (train, valid_seen, ...)",
        check_alfworld,
    )
)
register_env(
    _alfworld_spec(
        "alfworld-gen",
        make_generated_env,
        "generated ALFWorld games on the real engine, no data needed (splits train, valid, test)",
        alfworld_engine_missing,
        factory_arguments=_generator_options,
    )
)

register_env(SEARCH_QA_SPEC)
for _webshop_spec in WEBSHOP_SPECS:
    register_env(_webshop_spec)
register_env(TOY_SPEC)


def _factory_arguments(env_config) -> tuple[EnvSpec, dict]:
    spec = get_env_spec(env_config.name)
    arguments = spec.factory_arguments(env_config)
    if spec.turn_limit_argument:
        name = spec.turn_limit_argument
        if name in env_config.options:
            raise ConfigError(
                f"env.options.{name} is not an option of {spec.name!r}: its turn limit is env.max_turns "
                f"(set env.max_turns={env_config.options[name]} instead)"
            )
        arguments[name] = turn_limit(spec, env_config.max_turns)
    return spec, arguments


def env_factory(env_config) -> partial:
    """A picklable zero-argument factory of the configured env (fails early if it cannot run here)."""
    spec, arguments = _factory_arguments(env_config)
    problem = spec.check(arguments.get("data_dir"))  # the configured data folder, not just $ENV_DATA
    if problem is not None:
        raise ImportError(f"env {spec.name!r} cannot run here: {problem}")
    return partial(spec.factory, **arguments)


def make_env(env_config) -> TextEnv:
    """One env instance in this process."""
    return env_factory(env_config)()


__all__ = [
    "ENVS",
    "EnvSpec",
    "StepResult",
    "Task",
    "TextEnv",
    "env_factory",
    "get_env_spec",
    "make_env",
    "register_env",
    "template_prompt",
]
