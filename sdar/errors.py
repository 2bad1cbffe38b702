"""Errors whose message already says what went wrong and what to do: the CLI prints them as one line."""


class ActionableError(RuntimeError):
    """A failure outside the config (a missing package, an engine that died) explained in its message."""


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message says which and what to do."""
