"""sdar: multi-turn agentic RL with gated on-policy self-distillation (arXiv 2605.15155).

`sdar.train(config, *overrides, output=None)` trains as `sdar train` does (sdar/api.py). It is imported on
first use, so `import sdar` loads neither torch nor transformers.
"""

__version__ = "0.1.0"
__all__ = ["TrainResult", "train"]


def __getattr__(name: str):
    if name in __all__:
        from sdar import api

        return getattr(api, name)
    raise AttributeError(f"module 'sdar' has no attribute {name!r}")
