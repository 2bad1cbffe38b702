"""`make_env_pool`: the env pool the `env` config section asks for (docs/env-workers.md).

`env.executor: processes` → `EnvPool`, `env.workers` local processes (0 = in this process);
`env.executor: ray` → `RayEnvPool`, `env.workers` Ray actors in the cluster at `env.ray_address`.
Both have the `SlotPool` API and guarantees; Ray is imported only when a Ray pool is built.
"""

from __future__ import annotations

from sdar.envs import env_factory
from sdar.envs.pool import EnvPool, SlotPool
from sdar.envs.ray_pool import RayEnvPool
from sdar.errors import ConfigError


def make_env_pool(env_config, num_slots: int) -> SlotPool:
    """`num_slots` envs of `env_config` (an EnvConfig) run by the workers its `executor` names."""
    factory = env_factory(env_config)
    if env_config.executor == "ray":
        if env_config.workers < 1:
            raise ConfigError(
                "env.executor=ray needs env.workers >= 1 (the number of Ray actors); set env.workers=N "
                "or env.executor=processes"
            )
        return RayEnvPool(
            factory, num_slots, env_config.workers, env_config.step_timeout_s, address=env_config.ray_address
        )
    return EnvPool(
        factory, num_slots=num_slots, num_workers=env_config.workers, timeout_s=env_config.step_timeout_s
    )
