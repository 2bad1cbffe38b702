"""The ALFWorld game generator: classic logic, seeded scenes, priors, files, cache, games on the engine."""

from __future__ import annotations

import collections
import json
import random
import re
from pathlib import Path

import pytest

from sdar.envs.alfworld import generator
from sdar.envs.alfworld.engine import TASK_TYPES
from sdar.envs.alfworld.generator import (
    CLASSIC_DOMAIN_SHA256,
    CLASSIC_GRAMMAR_SHA256,
    OBJECT_PRIORS,
    SPLIT_SEEDS,
    GeneratorSettings,
    classic_logic,
    game_seed,
    generate_games,
    generated_split,
    to_classic_logic,
)
from sdar.envs.alfworld.layouts import (
    GOAL_TEMPLATES,
    Receptacle,
    place,
    render_problem,
    sample_scene,
    target_choices,
)
from sdar.envs.alfworld.priors import (
    DEDICATED_RECEPTACLES,
    LIGHT_SOURCES,
    OPENABLE_RECEPTACLES,
    ROOMS,
    TASK_APPLIANCE,
    TASK_OBJECT_FILTER,
)

SHARED_ALFWORLD = Path(__file__).resolve().parents[3] / "shared" / "data" / "alfworld"
PUT = re.compile(r"^put \w+ \d+ in/on \w+ \d+$")


DEFAULT = GeneratorSettings()


def _scene(task_type: str, seed: int, settings: GeneratorSettings = DEFAULT):
    return sample_scene(task_type, settings, random.Random(f"test/{task_type}/{seed}"))


def _package_logic() -> tuple[str, str]:
    data = generator._package_logic_dir()
    return (data / "alfred.pddl").read_text(), (data / "alfred.twl2").read_text()


# ---- domain and grammar ------------------------------------------------------------------------------------


def test_package_logic_is_rewritten_to_the_classic_files():
    pytest.importorskip("alfworld")
    package_domain, package_grammar = _package_logic()
    assert 'template :: "move {o} to {r}";' in package_grammar  # the 0.4.2 wheel speaks `move`
    domain, grammar = to_classic_logic(package_domain, package_grammar)
    assert generator._sha256(domain) == CLASSIC_DOMAIN_SHA256
    assert generator._sha256(grammar) == CLASSIC_GRAMMAR_SHA256
    assert "move {o} to {r}" not in grammar and grammar.count('template :: "put {o} in/on {r}";') == 2
    if (SHARED_ALFWORLD / "logic").is_dir():
        assert domain == (SHARED_ALFWORLD / "logic" / "alfred.pddl").read_text()
        assert grammar == (SHARED_ALFWORLD / "logic" / "alfred.twl2").read_text()


def test_classic_logic_skips_a_data_dir_with_the_move_grammar(tmp_path, monkeypatch):
    pytest.importorskip("alfworld")
    monkeypatch.delenv("ALFWORLD_DATA", raising=False)
    package_domain, package_grammar = _package_logic()
    (tmp_path / "logic").mkdir()
    (tmp_path / "logic" / "alfred.pddl").write_text(package_domain)
    (tmp_path / "logic" / "alfred.twl2").write_text(package_grammar)
    assert classic_logic(tmp_path) == classic_logic()  # both rebuilt from the wheel: the classic text
    assert "in/on" in classic_logic(tmp_path)[1] and "move {o} to {r}" not in classic_logic(tmp_path)[1]


def test_rewrite_refuses_unexpected_logic():
    with pytest.raises(generator.LogicSourceError, match="alfworld==0.4.2"):
        to_classic_logic("(define (domain alfred))", "grammar :: {}")


# ---- priors and scenes (pure Python, fast) -----------------------------------------------------------------


def test_priors_table_is_consistent_with_the_rooms():
    known_receptacles = {r for room in ROOMS.values() for r in room.receptacles}
    for object_type, prior in OBJECT_PRIORS.items():
        assert sum(prior.values()) == pytest.approx(1.0), object_type
        assert set(prior) <= known_receptacles, object_type
    for kind, room in ROOMS.items():
        assert set(room.essentials) <= set(room.receptacles), kind
        for (
            object_type
        ) in room.objects:  # every room object can be a pick target: two prior places in the room
            assert sum(r in room.receptacles for r in OBJECT_PRIORS[object_type]) >= 2, (kind, object_type)
        for light in room.lights:
            assert any(r in room.receptacles for r in OBJECT_PRIORS[light]), (kind, light)
    # The pairs the skills text relies on ("look for X in Y first") are real priors.
    for object_type, receptacle in [
        ("Apple", "Fridge"), ("Mug", "CoffeeMachine"), ("Knife", "Drawer"), ("Pillow", "Sofa"),
        ("KeyChain", "SideTable"), ("SoapBar", "SinkBasin"), ("CreditCard", "Desk"), ("DeskLamp", "Desk"),
    ]:  # fmt: skip
        assert OBJECT_PRIORS[object_type][receptacle] >= 0.1


def test_every_task_type_has_rooms_and_targets():
    for task_type in TASK_TYPES:
        assert any(target_choices(task_type, kind) for kind in ROOMS), task_type
    assert target_choices("pick_heat_then_place_in_recep", "bedroom") == {}  # no microwave there
    assert set(target_choices("look_at_obj_in_light", "livingroom")["Pillow"]) == set(LIGHT_SOURCES)


def test_same_rng_seed_gives_the_same_scene_and_problem():
    for task_type in TASK_TYPES:
        assert _scene(task_type, 3) == _scene(task_type, 3)
        assert render_problem(_scene(task_type, 3), "p") == render_problem(_scene(task_type, 3), "p")
    assert _scene("pick_and_place_simple", 3) != _scene("pick_and_place_simple", 4)


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_scenes_are_well_formed_and_not_won_at_start(task_type):
    for seed in range(150):
        scene = _scene(task_type, seed)
        room = ROOMS[scene.room_kind]
        types = [r.type for r in scene.receptacles]
        assert set(room.essentials) <= set(types)
        assert len({r.id for r in scene.receptacles} | {i.id for i in scene.items}) == len(types) + len(
            scene.items
        )
        targets = [i for i in scene.items if i.type == scene.object_target]
        assert len(targets) == (2 if task_type == "pick_two_obj_and_place" else 1)
        assert all(i.receptacle.type != scene.parent_target for i in targets)  # goal false at the start
        filled = {
            "obj": scene.object_target.lower(),
            "recep": scene.parent_target.lower(),
            "toggle": scene.toggle_target.lower(),
        }
        assert scene.goal in {t.format(**filled) for t in GOAL_TEMPLATES[task_type]}
        if task_type == "look_at_obj_in_light":
            assert scene.toggle_target in LIGHT_SOURCES and scene.parent_target == ""
            assert sum(i.type == scene.toggle_target for i in scene.items) == 1
        else:
            assert scene.parent_target in types and scene.toggle_target == ""
            assert scene.parent_target != TASK_APPLIANCE.get(task_type)
        if task_type in TASK_APPLIANCE:
            assert TASK_APPLIANCE[task_type] in types
            assert scene.object_target in TASK_OBJECT_FILTER[task_type]


def test_target_placement_follows_the_priors():
    # P(target in a prior type) = strength + (1 - strength) * uniform share >= strength.
    def prior_share(strength: float) -> float:
        settings = GeneratorSettings(prior_strength=strength)
        hits = total = 0
        for seed in range(600):
            scene = _scene("pick_and_place_simple", seed, settings)
            for item in scene.items:
                if item.type == scene.object_target:
                    total += 1
                    hits += item.receptacle.type in OBJECT_PRIORS[item.type]
        return hits / total

    assert prior_share(0.85) >= 0.85 - 0.04  # 3 sigma at n=600
    assert prior_share(1.0) == 1.0
    assert prior_share(0.0) < 0.75  # uniform placement is clearly less informative


def test_shuffled_priors_put_the_target_in_the_first_usual_place_the_room_has():
    usual = [_scene("pick_and_place_simple", seed) for seed in range(200)]
    shuffled_settings = GeneratorSettings(priors="shuffled", prior_strength=1.0)
    shuffled = [_scene("pick_and_place_simple", seed, shuffled_settings) for seed in range(200)]
    for scene in shuffled:
        assert sorted(scene.usual_places) == sorted(OBJECT_PRIORS[scene.object_target])
        room_types = {r.type for r in scene.receptacles} - {scene.parent_target}
        first_present = next(t for t in scene.usual_places if t in room_types)
        targets = [i for i in scene.items if i.type == scene.object_target]
        assert {i.receptacle.type for i in targets} == {first_present}
    for scene in usual:  # the usual order is the table's, most likely first
        weights = OBJECT_PRIORS[scene.object_target]
        assert [weights[t] for t in scene.usual_places] == sorted(weights.values(), reverse=True)
    # A game's order is its own: the most likely place differs across games of one object type
    firsts = collections.defaultdict(set)
    for scene in shuffled:
        firsts[scene.object_target].add(scene.usual_places[0])
    assert max(len(places) for places in firsts.values()) >= 3
    with pytest.raises(ValueError, match="usual, shuffled"):
        GeneratorSettings(priors="random")


def test_place_matches_prior_weights_and_uniform_skips_dedicated_receptacles():
    room = [
        Receptacle(f"{t}_{i}", t, f"loc{t}{i}") for t in ("Fridge", "CounterTop", "DiningTable") for i in (1,)
    ]
    room += [Receptacle(f"Cabinet_{i}", "Cabinet", f"locC{i}") for i in range(3)]
    room += [Receptacle("Toaster_1", "Toaster", "locT")]
    rng = random.Random(0)
    counts = collections.Counter(place("Apple", room, rng, prior_strength=1.0).type for _ in range(6000))
    prior = OBJECT_PRIORS["Apple"]
    present = {t: w for t, w in prior.items() if t in {"Fridge", "CounterTop", "DiningTable"}}
    for receptacle_type, weight in present.items():
        assert counts[receptacle_type] / 6000 == pytest.approx(weight / sum(present.values()), abs=0.025)
    assert set(counts) == set(present)
    uniform = collections.Counter(place("Apple", room, rng, prior_strength=0.0).type for _ in range(3000))
    assert "Toaster" in DEDICATED_RECEPTACLES and uniform["Toaster"] == 0
    assert uniform["Cabinet"] / 3000 == pytest.approx(3 / 6, abs=0.04)  # 3 of the 6 allowed receptacles
    forbidden = collections.Counter(
        place("Apple", room, rng, 1.0, forbidden="Fridge").type for _ in range(500)
    )
    assert forbidden["Fridge"] == 0


def test_settings_knobs_change_the_room():
    def receptacles(**knobs) -> list[int]:
        settings = GeneratorSettings(**knobs)
        return [len(_scene("pick_and_place_simple", s, settings).receptacles) for s in range(40)]

    small, large = receptacles(num_receptacles=6), receptacles(num_receptacles=16)
    assert max(small) <= 7 < 16 <= min(large)  # the task may need one or two more than asked
    objects = [
        len(_scene("pick_two_obj_and_place", s, GeneratorSettings(num_objects=12)).items) for s in range(20)
    ]
    assert set(objects) == {12}

    def openable_share(share: float) -> float:
        settings = GeneratorSettings(openable_share=share, room_kinds=("livingroom",), num_receptacles=10)
        types = [r.type for s in range(40) for r in _scene("pick_and_place_simple", s, settings).receptacles]
        return sum(t in OPENABLE_RECEPTACLES for t in types) / len(types)

    # Fillers only: the essentials and the receptacles the task needs (a drawer, say) are not drawn by share.
    assert openable_share(0.0) < 0.05 < 0.15 < openable_share(0.4) < 0.3 < 0.5 < openable_share(1.0)
    bathroom = GeneratorSettings(room_kinds="bathroom")
    assert bathroom.room_kinds == ("bathroom",)
    assert {_scene("pick_and_place_simple", s, bathroom).room_kind for s in range(10)} == {"bathroom"}


def test_settings_are_validated_with_useful_messages():
    with pytest.raises(ValueError, match="num_receptacles"):
        GeneratorSettings(num_receptacles=0)
    with pytest.raises(ValueError, match="prior_strength"):
        GeneratorSettings(prior_strength=1.5)
    with pytest.raises(ValueError, match="kitchen, livingroom, bedroom, bathroom"):
        GeneratorSettings(room_kinds=("garage",))
    with pytest.raises(ValueError, match="rooms that do: kitchen"):
        _scene("pick_heat_then_place_in_recep", 0, GeneratorSettings(room_kinds=("bedroom",)))
    with pytest.raises(ValueError, match="unknown generated split"):
        generated_split("validation", 1)
    with pytest.raises(ValueError, match="task_types"):
        generate_games(1, task_types=("pick_and_eat",))


def test_split_seeds_are_disjoint_panels():
    assert len(set(SPLIT_SEEDS.values())) == len(SPLIT_SEEDS)
    panels = {name: {game_seed(seed, i) for i in range(5000)} for name, seed in SPLIT_SEEDS.items()}
    assert not panels["train"] & panels["valid"] and not panels["valid"] & panels["test"]
    with pytest.raises(ValueError):
        game_seed(0, generator.SEED_STRIDE)


def test_settings_key_changes_with_the_settings():
    assert generator.settings_key(GeneratorSettings()) == generator.settings_key(GeneratorSettings())
    assert generator.settings_key(GeneratorSettings()) != generator.settings_key(
        GeneratorSettings(num_objects=9)
    )


# ---- games on the real engine ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def six_games(tmp_path_factory):
    """One generated game per task type (seed 0) in a fresh cache, with the classic logic from the wheel."""
    pytest.importorskip("alfworld")
    pytest.importorskip("textworld")
    cache = tmp_path_factory.mktemp("sdar-cache")
    return cache, generate_games(6, seed=0, cache_dir=cache)


def _files(paths: list[Path], cache: Path) -> dict[str, bytes]:
    found = {}
    for game_file in paths:
        for name in ("game.tw-pddl", "traj_data.json"):
            path = game_file.parent / name
            found[path.relative_to(cache).as_posix()] = path.read_bytes()
    return found


@pytest.mark.slow
def test_games_use_the_official_layout_and_all_task_types(six_games):
    cache, paths = six_games
    assert [json.loads((p.parent / "traj_data.json").read_text())["task_type"] for p in paths] == list(
        TASK_TYPES
    )
    for index, path in enumerate(paths):
        folder, trial = path.parent.parent.name, path.parent.name
        assert trial == f"trial_gen_{index}" and folder.endswith(f"-gen{index}")
        task_type, obj, mrecep, recep, _ = folder.split("-")
        traj = json.loads((path.parent / "traj_data.json").read_text())
        params = traj["pddl_params"]
        assert (task_type, obj, mrecep) == (traj["task_type"], params["object_target"], "None")
        assert recep == (params["parent_target"] or params["toggle_target"])
        game = json.loads(path.read_text())
        assert game["solvable"] is True and set(game) == {
            "pddl_domain",
            "grammar",
            "pddl_problem",
            "solvable",
        }
        assert f"Your task is to: {traj['sdar_generator']['goal']}" in game["grammar"]
        assert path.is_relative_to(cache / "alfworld-gen")


@pytest.mark.slow
def test_same_seed_gives_byte_identical_games(six_games, tmp_path):
    cache, paths = six_games
    again = generate_games(6, seed=0, cache_dir=tmp_path)
    assert _files(again, tmp_path) == _files(paths, cache)


@pytest.mark.slow
def test_planner_solves_each_type_with_the_classic_put_command(six_games):
    from sdar.envs.alfworld.engine import AlfworldGame, split_goal

    _, paths = six_games
    for path in paths:
        traj = json.loads((path.parent / "traj_data.json").read_text())
        game = AlfworldGame(path)
        state = game.reset()
        assert state.observation.startswith("You are in the middle of a room.")
        assert split_goal(state.observation) == traj["sdar_generator"]["goal"]
        plan = game.plan()
        assert plan == traj["sdar_generator"]["expert_plan"] and 2 <= len(plan) <= 15
        for command in plan:
            assert command in state.admissible_commands
            state = game.step(command)
            assert not any(c.startswith("move ") for c in state.admissible_commands)
            if command.startswith("go to "):
                assert state.observation.startswith("You arrive at loc ")  # classic arrival text
        assert state.won
        if traj["task_type"] != "look_at_obj_in_light":
            assert PUT.match(plan[-1]), plan
        game.close()


@pytest.mark.slow
def test_random_admissible_play_rarely_wins(six_games):
    from sdar.envs.alfworld.engine import AlfworldGame

    _, paths = six_games
    wins = 0
    for index, path in enumerate(paths):
        rng, game = random.Random(index), AlfworldGame(path)
        state = game.reset()
        for _ in range(30):
            state = game.step(rng.choice(state.admissible_commands))
            if state.won:
                wins += 1
                break
        game.close()
    assert wins <= 1  # the benchmark measures 0/60 at 50 steps


@pytest.mark.slow
def test_cache_is_reused_and_splits_are_disjoint(six_games):
    cache, paths = six_games
    before = {p: p.stat().st_mtime_ns for p in paths}
    assert generated_split("train", 6, cache_dir=cache) == paths  # train = seed 0: all cached
    assert {p: p.stat().st_mtime_ns for p in paths} == before
    valid = generated_split("valid", 2, cache_dir=cache)
    assert not {p.parent.parent.name for p in valid} & {p.parent.parent.name for p in paths}
    root = generator.game_root(GeneratorSettings(), cache)
    assert not list(root.parent.joinpath(".staging").iterdir())  # nothing half-written left behind
    assert json.loads((root / "settings.json").read_text())["settings"]["num_receptacles"] == 10
