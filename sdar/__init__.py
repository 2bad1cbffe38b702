"""sdar: multi-turn agentic RL with gated on-policy self-distillation (arXiv 2605.15155)."""

__version__ = "0.1.0"
