"""Rollout: the batched multi-turn loop (`sdar.rollout.engine`) that plays envs with the policy and records
every turn's tokens. The reply formats and the history memory it uses belong to the envs' side of the
conversation: `sdar.envs.replies` and `sdar.envs.history`."""
