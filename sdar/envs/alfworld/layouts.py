"""Sampling one ALFWorld room + task (`Scene`) and writing it as a PDDL problem for the alfred domain.

Pure Python and seeded: `sample_scene(task_type, settings, random.Random(...))` draws, in this order, the room
kind, the target object type, the goal receptacle type (or the light source for look tasks), the receptacles
of the room, the distractor objects, and where every object sits. Object placement follows `OBJECT_PRIORS`
with probability `settings.prior_strength`, otherwise it is uniform over the room's receptacles (dedicated
ones such as the toaster excepted). With `settings.priors = "shuffled"` each game first ranks every object
type's usual receptacle types in its own random order, and a placed-by-priors object goes to the first of
them the room has. The goal is never true at the start: no object of the target type starts
in a receptacle of the goal type.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from sdar.envs.alfworld.engine import TASK_TYPES
from sdar.envs.alfworld.priors import (
    CLEANABLE,
    COOLABLE,
    DEDICATED_RECEPTACLES,
    HEATABLE,
    LIGHT_SOURCES,
    OBJECT_PRIORS,
    OPENABLE_RECEPTACLES,
    RECEPTACLE_OBJECTS,
    ROOM_KINDS,
    ROOMS,
    TASK_APPLIANCE,
    TASK_OBJECT_FILTER,
    usual_order,
)

LOOK = "look_at_obj_in_light"
PRIOR_MODES = ("usual", "shuffled")
PICK_TWO = "pick_two_obj_and_place"

# The two goal phrasings per task type, exactly as the classic game files word them (alfworld fills the
# grammar's "UNKNOWN GOAL" with one of these and the grammar adds the final period).
GOAL_TEMPLATES = {
    "pick_and_place_simple": ("put a {obj} in {recep}", "put some {obj} on {recep}"),
    "look_at_obj_in_light": ("look at {obj} under the {toggle}", "examine the {obj} with the {toggle}"),
    "pick_clean_then_place_in_recep": (
        "put a clean {obj} in {recep}",
        "clean some {obj} and put it in {recep}",
    ),
    "pick_heat_then_place_in_recep": ("put a hot {obj} in {recep}", "heat some {obj} and put it in {recep}"),
    "pick_cool_then_place_in_recep": ("put a cool {obj} in {recep}", "cool some {obj} and put it in {recep}"),
    "pick_two_obj_and_place": ("put two {obj} in {recep}", "find two {obj} and put them in {recep}"),
}

# Type constants the alfred domain's preconditions name; fast-downward needs them declared in every problem.
_DOMAIN_RTYPES = ("FridgeType", "MicrowaveType", "SinkBasinType")
_DOMAIN_OTYPES = ("ButterKnifeType", "KnifeType")


@dataclass(frozen=True)
class GeneratorSettings:
    """Knobs of a generated room. Defaults give small rooms an expert solves in about 4-12 steps."""

    num_receptacles: int = 10  # receptacles in the room (more if the task needs more; see sample_scene)
    num_objects: int = 8  # object instances, targets included, light source excluded
    num_distractor_types: int = 4  # object types other than the target type
    openable_share: float = (
        0.4  # chance that a filler receptacle is a closed container (cabinet, drawer, safe)
    )
    prior_strength: float = 0.85  # chance that an object is placed by OBJECT_PRIORS rather than uniformly
    # "usual": placed by OBJECT_PRIORS' weights. "shuffled": every game ranks each object type's usual
    # receptacle types in its own random order and puts the object in the first one the room has, so only a
    # skill that states the game's order (Scene.usual_places) tells where to look. Shuffled games teach a
    # warm start to read such a skill (experiments/cpu_reproduction).
    priors: str = "usual"
    room_kinds: tuple[str, ...] = ROOM_KINDS  # rooms to draw from (each task type uses the ones that fit it)
    max_expert_steps: int = 15  # a game whose planner solution is longer is resampled
    max_attempts: int = 10  # samples tried per game before giving up

    def __post_init__(self) -> None:
        if isinstance(self.room_kinds, str):
            object.__setattr__(self, "room_kinds", (self.room_kinds,))
        object.__setattr__(self, "room_kinds", tuple(self.room_kinds))
        bounds = {
            "num_receptacles": (3, 60),
            "num_objects": (2, 60),
            "num_distractor_types": (0, 30),
            "openable_share": (0.0, 1.0),
            "prior_strength": (0.0, 1.0),
            "max_expert_steps": (2, 200),
            "max_attempts": (1, 1000),
        }
        for name, (low, high) in bounds.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise ValueError(
                    f"GeneratorSettings.{name}={value!r} is out of range; it must lie in [{low}, {high}]"
                )
        if self.priors not in PRIOR_MODES:
            raise ValueError(
                f"GeneratorSettings.priors={self.priors!r} is not valid; use one of: {', '.join(PRIOR_MODES)}"
            )
        bad = [kind for kind in self.room_kinds if kind not in ROOMS]
        if bad or not self.room_kinds:
            raise ValueError(
                f"GeneratorSettings.room_kinds={self.room_kinds!r} is not valid; use a non-empty subset of: "
                f"{', '.join(ROOM_KINDS)}"
            )


@dataclass(frozen=True)
class Receptacle:
    id: str  # mangled ALFRED id, e.g. "Cabinet_bar__plus_01_dot_20_bar__minus_00_dot_40_bar__plus_02_dot_10"
    type: str
    location: str


@dataclass(frozen=True)
class Item:
    id: str
    type: str
    receptacle: Receptacle


@dataclass(frozen=True)
class Scene:
    """One generated task: room, goal, and every object's starting receptacle."""

    task_type: str
    room_kind: str
    object_target: str  # e.g. "Mug"
    parent_target: str  # goal receptacle type, "" for look tasks
    toggle_target: str  # light source type for look tasks, else ""
    goal: str  # e.g. "put a mug in cabinet" (the grammar adds the period)
    receptacles: tuple[Receptacle, ...]
    items: tuple[Item, ...]
    start_location: str
    usual_places: tuple[str, ...]  # the target's usual receptacle types in this game, most likely first


def _weighted(rng: random.Random, weights: dict[str, float]) -> str:
    keys = list(weights)
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]


def _prior_types_in_room(object_type: str, room_kind: str, exclude: str = "") -> list[str]:
    available = ROOMS[room_kind].receptacles
    return [r for r in OBJECT_PRIORS[object_type] if r in available and r != exclude]


def target_choices(task_type: str, room_kind: str) -> dict[str, tuple[str, ...]]:
    """{object type: goal receptacle types (light sources for look tasks)} this room supports for the task."""
    room = ROOMS[room_kind]
    if task_type == LOOK:
        return {o: room.lights for o in room.objects} if room.lights else {}
    appliance = TASK_APPLIANCE.get(task_type, "")
    if appliance and appliance not in room.receptacles:
        return {}
    allowed = TASK_OBJECT_FILTER.get(task_type)
    choices = {}
    for object_type in room.objects:
        if allowed is not None and object_type not in allowed:
            continue
        # The goal receptacle type must leave another prior type for the object to start in.
        parents = tuple(
            r
            for r in _prior_types_in_room(object_type, room_kind, exclude=appliance)
            if _prior_types_in_room(object_type, room_kind, exclude=r)
        )
        if parents:
            choices[object_type] = parents
    return choices


def place(
    object_type: str,
    receptacles: list[Receptacle],
    rng: random.Random,
    prior_strength: float,
    forbidden: str = "",
    ranking: tuple[str, ...] = (),
) -> Receptacle:
    """A receptacle for one object: by OBJECT_PRIORS with probability prior_strength, else uniform.
    A `ranking` (shuffled priors) replaces the weights: the first of its types that the room has."""
    prior = OBJECT_PRIORS[object_type]
    allowed = [
        r
        for r in receptacles
        if r.type != forbidden and (r.type not in DEDICATED_RECEPTACLES or r.type in prior)
    ]
    present = {t: w for t, w in prior.items() if any(r.type == t for r in allowed)}
    use_prior = rng.random() < prior_strength
    if use_prior and present:
        chosen = next(t for t in ranking if t in present) if ranking else _weighted(rng, present)
        return rng.choice([r for r in allowed if r.type == chosen])
    return rng.choice(allowed)


def _mangle(type_name: str, rng: random.Random, taken: set[str]) -> str:
    """An ALFRED id `Type|+x.xx|+y.yy|-z.zz` in mangled form; sink/bathtub basins get the basin suffix."""
    while True:
        coords = []
        for _ in range(3):
            value = rng.randint(-400, 400)
            sign = "plus" if value >= 0 else "minus"
            coords.append(f"_{sign}_{abs(value) // 100:02d}_dot_{abs(value) % 100:02d}")
        base = {"SinkBasin": "Sink", "BathtubBasin": "Bathtub"}.get(type_name, type_name)
        mangled = "_bar_".join([base, *coords])
        if base != type_name:
            mangled += f"_bar_{type_name}"
        if mangled not in taken:
            taken.add(mangled)
            return mangled


def _location(rng: random.Random, taken: set[str]) -> str:
    while True:
        parts = [
            rng.randint(-12, 12),
            rng.randint(-12, 12),
            rng.randint(0, 3),
            rng.choice((-30, 0, 15, 30, 45, 60)),
        ]
        name = "loc_bar_" + "_bar_".join(str(p) if p >= 0 else f"_minus_{-p}" for p in parts)
        if name not in taken:
            taken.add(name)
            return name


def _room_receptacle_types(
    room_kind: str, required: list[str], settings: GeneratorSettings, rng: random.Random
) -> dict[str, int]:
    """{receptacle type: count}: the required types, then fillers up to num_receptacles."""
    spec = ROOMS[room_kind].receptacles
    counts: dict[str, int] = {}
    for type_name in required:
        counts[type_name] = 1
    for _ in range(settings.num_receptacles - len(counts)):
        want_openable = rng.random() < settings.openable_share
        open_slots = {t: w for t, (most, w) in spec.items() if w > 0 and counts.get(t, 0) < most}
        pools = [
            {t: w for t, w in open_slots.items() if (t in OPENABLE_RECEPTACLES) == flag}
            for flag in (want_openable, not want_openable)
        ]
        pool = pools[0] or pools[1]
        if not pool:
            break
        chosen = _weighted(rng, pool)
        counts[chosen] = counts.get(chosen, 0) + 1
    return counts


def sample_scene(task_type: str, settings: GeneratorSettings, rng: random.Random) -> Scene:
    """Draw one room and task of `task_type`; deterministic given the rng state."""
    if task_type not in TASK_TYPES:
        raise ValueError(f"unknown task_type {task_type!r}; expected one of {', '.join(TASK_TYPES)}")
    # Uniform over (room, object, goal receptacle or light) triples, so rooms with more to do (kitchens) are
    # drawn more often, as in ALFWorld.
    triples = [
        (kind, object_type, goal_type)
        for kind in settings.room_kinds
        for object_type, goal_types in sorted(target_choices(task_type, kind).items())
        for goal_type in goal_types
    ]
    if not triples:
        raise ValueError(
            f"no room in GeneratorSettings.room_kinds={settings.room_kinds} supports {task_type}; "
            f"rooms that do: {', '.join(k for k in ROOM_KINDS if target_choices(task_type, k))}"
        )
    # Shuffled priors are drawn first, so that a shuffled game shares nothing else with its usual twin.
    rankings = _shuffled_rankings(rng) if settings.priors == "shuffled" else {}
    room_kind, object_target, goal_type = rng.choice(triples)
    room = ROOMS[room_kind]
    toggle_target, parent_target = (goal_type, "") if task_type == LOOK else ("", goal_type)

    # Receptacles the task needs: the room's essentials, the goal receptacle, the appliance, one receptacle
    # type where the target is usually found, and a holder for the light source.
    required = list(room.essentials)
    for type_name in (parent_target, TASK_APPLIANCE.get(task_type, "")):
        if type_name:
            required.append(type_name)
    sources = _prior_types_in_room(object_target, room_kind, parent_target)
    if rankings:
        required.append(next(t for t in rankings[object_target] if t in sources))
    else:
        required.append(_weighted(rng, {t: OBJECT_PRIORS[object_target][t] for t in sources}))
    if toggle_target:
        holders = {t: OBJECT_PRIORS[toggle_target][t] for t in _prior_types_in_room(toggle_target, room_kind)}
        required.append(_weighted(rng, holders))
    required = list(dict.fromkeys(required))
    counts = _room_receptacle_types(room_kind, required, settings, rng)

    taken: set[str] = set()
    receptacles = [
        Receptacle(_mangle(type_name, rng, taken), type_name, _location(rng, taken))
        for type_name in room.receptacles
        for _ in range(counts.get(type_name, 0))
    ]
    start_location = _location(rng, taken)

    num_targets = 2 if task_type == PICK_TWO else 1
    pool = [o for o in room.objects if o != object_target]
    distractors = rng.sample(pool, min(settings.num_distractor_types, len(pool)))
    instance_types = [object_target] * num_targets + distractors
    instance_types += (
        [rng.choice(distractors) for _ in range(settings.num_objects - len(instance_types))]
        if distractors
        else []
    )
    items = []
    for index, object_type in enumerate(instance_types):
        forbidden = parent_target if index < num_targets else ""
        ranking = rankings.get(object_type, ())
        where = place(object_type, receptacles, rng, settings.prior_strength, forbidden, ranking)
        items.append(Item(_mangle(object_type, rng, taken), object_type, where))
    if toggle_target:
        where = place(toggle_target, receptacles, rng, prior_strength=1.0)
        items.append(Item(_mangle(toggle_target, rng, taken), toggle_target, where))

    template = rng.choice(GOAL_TEMPLATES[task_type])
    goal = template.format(
        obj=object_target.lower(), recep=parent_target.lower(), toggle=toggle_target.lower()
    )
    return Scene(
        task_type, room_kind, object_target, parent_target, toggle_target, goal,
        tuple(receptacles), tuple(items), start_location,
        rankings.get(object_target) or usual_order(object_target),
    )  # fmt: skip


def _shuffled_rankings(rng: random.Random) -> dict[str, tuple[str, ...]]:
    """{object type: its usual receptacle types in a random order} for every pickupable type."""
    return {
        object_type: tuple(rng.sample(list(weights), len(weights)))
        for object_type, weights in sorted(OBJECT_PRIORS.items())
        if object_type not in LIGHT_SOURCES
    }


def _goal_pddl(scene: Scene) -> str:
    obj, recep, toggle = (
        f"{scene.object_target}Type",
        f"{scene.parent_target}Type",
        f"{scene.toggle_target}Type",
    )
    if scene.task_type == LOOK:
        return (
            "(:goal (and\n"
            "    (exists (?ot - object ?r - receptacle ?a - agent ?l - location)\n"
            f"        (and (objectType ?ot {toggle}) (toggleable ?ot) (isToggled ?ot)\n"
            "             (receptacleAtLocation ?r ?l) (atLocation ?a ?l) (inReceptacle ?ot ?r)))\n"
            f"    (exists (?o - object ?a - agent) (and (objectType ?o {obj}) (holds ?a ?o)))))\n"
        )
    if scene.task_type == PICK_TWO:
        return (
            "(:goal (exists (?r - receptacle ?o1 - object ?o2 - object)\n"
            f"    (and (receptacleType ?r {recep}) (not (= ?o1 ?o2))\n"
            f"         (objectType ?o1 {obj}) (inReceptacle ?o1 ?r)\n"
            f"         (objectType ?o2 {obj}) (inReceptacle ?o2 ?r))))\n"
        )
    state = {
        "pick_clean_then_place_in_recep": " (cleanable ?o) (isClean ?o)",
        "pick_heat_then_place_in_recep": " (heatable ?o) (isHot ?o)",
        "pick_cool_then_place_in_recep": " (coolable ?o) (isCool ?o)",
    }.get(scene.task_type, "")
    return (
        "(:goal (exists (?r - receptacle ?o - object)\n"
        f"    (and (objectType ?o {obj}) (receptacleType ?r {recep}){state} (inReceptacle ?o ?r))))\n"
    )


def render_problem(scene: Scene, name: str) -> str:
    """The PDDL problem text of a scene (objects, initial facts, goal) for the classic alfred domain."""
    object_types = sorted({i.type for i in scene.items})
    receptacle_types = sorted({r.type for r in scene.receptacles})
    locations = [r.location for r in scene.receptacles] + [scene.start_location]
    lines = [f"(define (problem {name})", "(:domain alfred)", "(:objects", "    agent1 - agent"]
    lines += [f"    {t} - otype" for t in sorted({f"{o}Type" for o in object_types} | set(_DOMAIN_OTYPES))]
    lines += [
        f"    {t} - rtype" for t in sorted({f"{r}Type" for r in receptacle_types} | set(_DOMAIN_RTYPES))
    ]
    lines += [f"    {i.id} - object" for i in scene.items]
    lines += [f"    {r.id} - receptacle" for r in scene.receptacles]
    lines += [f"    {loc} - location" for loc in locations]
    lines += [")", "(:init", f"    (atLocation agent1 {scene.start_location})"]
    for r in scene.receptacles:
        lines.append(f"    (receptacleType {r.id} {r.type}Type)")
        lines.append(f"    (receptacleAtLocation {r.id} {r.location})")
        if r.type in OPENABLE_RECEPTACLES:
            lines.append(f"    (openable {r.id})")
    for i in scene.items:
        lines.append(f"    (objectType {i.id} {i.type}Type)")
        lines.append(f"    (inReceptacle {i.id} {i.receptacle.id})")
        lines.append(f"    (objectAtLocation {i.id} {i.receptacle.location})")
        if i.type == scene.toggle_target:
            lines.append(f"    (toggleable {i.id})")
            continue
        lines.append(f"    (pickupable {i.id})")
        for predicate, members in (
            ("isReceptacleObject", RECEPTACLE_OBJECTS), ("cleanable", CLEANABLE), ("heatable", HEATABLE),
            ("coolable", COOLABLE),
        ):  # fmt: skip
            if i.type in members:
                lines.append(f"    ({predicate} {i.id})")
    for receptacle_type in receptacle_types:
        for object_type in object_types:
            if receptacle_type in OBJECT_PRIORS[object_type] and object_type != scene.toggle_target:
                lines.append(f"    (canContain {receptacle_type}Type {object_type}Type)")
    lines.append(")")
    return "\n".join(lines) + "\n" + _goal_pddl(scene) + ")\n"
