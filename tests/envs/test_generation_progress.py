"""Generating ALFWorld games on a fresh cache says what it prepares; a cached split says nothing."""

import sdar.envs.alfworld.generator as generator


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_slow_generation_prints_progress_lines_a_few_seconds_apart(capsys, monkeypatch, tmp_path):
    clock = Clock()
    monkeypatch.setattr(generator.time, "monotonic", clock)

    def slow_game(seed, task_type, settings, cache_dir):
        clock.now += 1.5  # as the planner's check of a fresh game takes
        return tmp_path / f"game_{seed}"

    monkeypatch.setattr(generator, "generate_game", slow_game)
    games = generator.generate_games(10, seed=0, cache_dir=tmp_path)
    assert len(games) == 10
    lines = capsys.readouterr().err.splitlines()
    where = generator.game_root(generator.DEFAULT_SETTINGS, tmp_path)
    # 1.5 s a game: the first line after 2 s (game 2), then every 5 s (games 6 and 10)
    assert lines == [f"generating ALFWorld games: {n}/10 (cached in {where})" for n in (2, 6, 10)]


def test_a_cached_split_prints_nothing(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(generator, "generate_game", lambda seed, task_type, settings, cache_dir: tmp_path)
    generator.generate_games(10, seed=0, cache_dir=tmp_path)
    assert capsys.readouterr().err == ""
