"""`play`: a person plays one task in the terminal and sees what the model would see.

Each turn shows the observation text exactly as the env returns it (the model's prompt is built around this
text; pass `render_prompt`, e.g. `build_alfworld_prompt`, to see the whole prompt instead) and the admissible
actions. Type an action, or the number of an admissible action. Loop commands: `help`, `expert` (the
expert's next action, not stepped), `quit`; a leading `!` sends the rest verbatim (`!help` reaches the game).
"""

from __future__ import annotations

from collections.abc import Callable

from sdar.env_records import StepResult
from sdar.envs.base import TextEnv
from sdar.envs.policies import EpisodeOutcome, PromptRenderer

HELP = """Type an action (exactly as listed) or its number, then Enter.
  help     this text
  expert   show the expert's next action (does not step it)
  quit     end the episode
  !TEXT    send TEXT verbatim (e.g. !help for the game's own help)"""


def _show(task, result: StepResult, history, render_prompt: PromptRenderer | None, print_fn) -> None:
    if render_prompt is not None:
        print_fn(render_prompt(task, result.observation, result.admissible_actions, history, len(history)))
        return
    print_fn(result.observation)
    if result.admissible_actions:
        print_fn("Admissible actions:")
        for number, action in enumerate(result.admissible_actions, 1):
            print_fn(f"  {number:2d}. {action}")


def play(
    env: TextEnv,
    task_id: str,
    input_fn: Callable[[str], str] = input,
    print_fn: Callable[..., None] = print,
    *,
    render_prompt: PromptRenderer | None = None,
    max_turns: int | None = None,
) -> EpisodeOutcome:
    """Play `task_id` interactively until won, failed, `quit`, end of input or `max_turns` steps."""
    task, result = env.reset(task_id)
    print_fn(f"=== {task.task_type}: {task.goal}  [{task.task_id}]")
    print_fn("(type 'help' for commands)")
    history: list[tuple[str, str]] = []
    reward = 0.0
    _show(task, result, history, render_prompt, print_fn)
    while not result.done and (max_turns is None or len(history) < max_turns):
        try:
            text = input_fn(f"step {len(history) + 1}> ").strip()
        except (EOFError, KeyboardInterrupt):
            print_fn("")
            break
        command = text.lower()
        if command in ("quit", "exit"):
            break
        if command in ("help", "?"):
            print_fn(HELP)
            continue
        if command == "expert":
            expert = env.expert_action()
            print_fn(f"expert: {expert}" if expert is not None else "expert: (no expert action here)")
            continue
        if text.startswith("!"):
            action = text[1:]
        elif (
            text.isdigit() and result.admissible_actions and 1 <= int(text) <= len(result.admissible_actions)
        ):
            action = result.admissible_actions[int(text) - 1]
        else:
            action = text
        print_fn(f"> {action}")
        observation = result.observation
        result = env.step(action)
        history.append((observation, action))
        reward += result.reward
        _show(task, result, history, render_prompt, print_fn)
    error = result.info.get("error")
    if result.won:
        print_fn(f"*** won in {len(history)} steps (reward {reward:g})")
    else:
        print_fn(f"*** not won after {len(history)} steps" + (f" (env error: {error})" if error else ""))
    return EpisodeOutcome(task, result.won, reward, len(history), tuple(a for _, a in history), error)
