"""Commonsense tables for generated ALFWorld rooms: where objects usually are, what each room holds.

Type names are the alfred PDDL type names (`CounterTop`, `SinkBasin`, `ButterKnife`); the name a player sees
is the lower-cased type plus a number (`countertop 1`, `sinkbasin 1`, `butterknife 2`), so `name.lower()` maps
a table entry to game text.

`OBJECT_PRIORS` weights are rounded from where each object type sits in the 340 classic ALFWorld games of the
shared data (valid_seen + the 200-game train subset; inReceptacle facts counted per receptacle type), keeping
the 3-6 receptacle types that make sense for a small room. They are what the skills text may claim ("look for
an apple in the fridge first"); `layouts.sample_scene` follows them with probability `prior_strength`.
"""

from __future__ import annotations

from dataclasses import dataclass

ROOM_KINDS = ("kitchen", "livingroom", "bedroom", "bathroom")

# Receptacles that start closed and must be opened before anything inside is seen or taken (ALFRED's openable
# receptacle classes that occur in our rooms).
OPENABLE_RECEPTACLES = frozenset({"Cabinet", "Drawer", "Fridge", "Microwave", "Safe"})

# Receptacles that only hold the objects whose prior lists them (nobody leaves a pen in the toaster), so a
# uniform (non-prior) placement never uses them for other objects.
DEDICATED_RECEPTACLES = frozenset(
    {"CoffeeMachine", "Toaster", "StoveBurner", "TowelHolder", "HandTowelHolder", "ToiletPaperHanger"}
)

# object type -> {receptacle type: weight}; each row sums to 1.
OBJECT_PRIORS: dict[str, dict[str, float]] = {
    # kitchen
    "Apple": {"Fridge": 0.35, "CounterTop": 0.3, "DiningTable": 0.2, "GarbageCan": 0.15},
    "Bowl": {"Cabinet": 0.35, "CounterTop": 0.25, "Fridge": 0.2, "DiningTable": 0.2},
    "Bread": {"CounterTop": 0.55, "DiningTable": 0.3, "Fridge": 0.15},
    "ButterKnife": {"CounterTop": 0.5, "DiningTable": 0.3, "Drawer": 0.2},
    "Cup": {"Cabinet": 0.3, "CounterTop": 0.25, "Fridge": 0.2, "DiningTable": 0.15, "SinkBasin": 0.1},
    "DishSponge": {"CounterTop": 0.3, "Cabinet": 0.3, "DiningTable": 0.2, "Drawer": 0.2},
    "Egg": {"Fridge": 0.4, "CounterTop": 0.35, "DiningTable": 0.15, "GarbageCan": 0.1},
    "Fork": {"CounterTop": 0.45, "Drawer": 0.3, "DiningTable": 0.25},
    "Kettle": {"StoveBurner": 0.45, "CounterTop": 0.35, "Cabinet": 0.2},
    "Knife": {"CounterTop": 0.5, "Drawer": 0.25, "DiningTable": 0.25},
    "Ladle": {"CounterTop": 0.45, "Drawer": 0.25, "Cabinet": 0.15, "DiningTable": 0.15},
    "Lettuce": {"CounterTop": 0.4, "DiningTable": 0.3, "Fridge": 0.3},
    "Mug": {
        "Cabinet": 0.25,
        "CoffeeMachine": 0.25,
        "CounterTop": 0.25,
        "DiningTable": 0.15,
        "SinkBasin": 0.1,
    },
    "Pan": {"StoveBurner": 0.6, "CounterTop": 0.3, "Cabinet": 0.1},
    "PepperShaker": {"CounterTop": 0.35, "Cabinet": 0.3, "Drawer": 0.2, "DiningTable": 0.15},
    "Plate": {"Cabinet": 0.4, "CounterTop": 0.3, "DiningTable": 0.2, "Fridge": 0.1},
    "Pot": {"StoveBurner": 0.7, "CounterTop": 0.15, "Cabinet": 0.15},
    "Potato": {"CounterTop": 0.35, "Fridge": 0.3, "DiningTable": 0.2, "GarbageCan": 0.15},
    "SaltShaker": {"Cabinet": 0.35, "CounterTop": 0.3, "Drawer": 0.2, "DiningTable": 0.15},
    "Spatula": {"CounterTop": 0.45, "Drawer": 0.3, "DiningTable": 0.25},
    "Spoon": {"CounterTop": 0.35, "Drawer": 0.3, "DiningTable": 0.2, "SinkBasin": 0.15},
    "Tomato": {"CounterTop": 0.35, "Fridge": 0.35, "DiningTable": 0.2, "GarbageCan": 0.1},
    "WineBottle": {"CounterTop": 0.3, "DiningTable": 0.3, "Cabinet": 0.3, "GarbageCan": 0.1},
    # living room and bedroom
    "AlarmClock": {"Desk": 0.35, "SideTable": 0.3, "Dresser": 0.2, "Shelf": 0.15},
    "Book": {"Bed": 0.4, "Desk": 0.2, "SideTable": 0.15, "Dresser": 0.15, "Drawer": 0.1},
    "Box": {"DiningTable": 0.3, "Sofa": 0.25, "CoffeeTable": 0.25, "Dresser": 0.2},
    "CD": {"Drawer": 0.35, "Desk": 0.25, "Dresser": 0.2, "SideTable": 0.2},
    "CellPhone": {"Bed": 0.3, "Drawer": 0.25, "Desk": 0.2, "Dresser": 0.15, "SideTable": 0.1},
    "CreditCard": {"Drawer": 0.3, "SideTable": 0.25, "Dresser": 0.15, "Desk": 0.15, "CoffeeTable": 0.15},
    "KeyChain": {
        "SideTable": 0.25,
        "Drawer": 0.2,
        "Dresser": 0.2,
        "ArmChair": 0.15,
        "Desk": 0.1,
        "Shelf": 0.1,
    },
    "Laptop": {"Bed": 0.45, "Desk": 0.2, "Sofa": 0.2, "CoffeeTable": 0.15},
    "Newspaper": {"Sofa": 0.35, "CoffeeTable": 0.25, "SideTable": 0.2, "ArmChair": 0.2},
    "Pen": {"Desk": 0.3, "SideTable": 0.25, "Dresser": 0.2, "Drawer": 0.15, "Shelf": 0.1},
    "Pencil": {"Drawer": 0.3, "Desk": 0.25, "SideTable": 0.25, "Dresser": 0.2},
    "Pillow": {"Bed": 0.55, "Sofa": 0.3, "ArmChair": 0.15},
    "RemoteControl": {"Sofa": 0.3, "CoffeeTable": 0.25, "ArmChair": 0.2, "SideTable": 0.15, "TVStand": 0.1},
    "Statue": {"Shelf": 0.35, "CoffeeTable": 0.25, "SideTable": 0.2, "DiningTable": 0.2},
    "TissueBox": {"SideTable": 0.3, "CoffeeTable": 0.25, "Shelf": 0.25, "Dresser": 0.2},
    "Vase": {"Shelf": 0.45, "CoffeeTable": 0.2, "SideTable": 0.2, "TVStand": 0.15},
    "Watch": {"CoffeeTable": 0.3, "SideTable": 0.25, "Dresser": 0.2, "TVStand": 0.15, "Drawer": 0.1},
    # bathroom
    "Candle": {"Toilet": 0.3, "CounterTop": 0.3, "Cabinet": 0.2, "Shelf": 0.2},
    "Cloth": {"BathtubBasin": 0.35, "Cabinet": 0.3, "CounterTop": 0.2, "Drawer": 0.15},
    "SoapBar": {"SinkBasin": 0.25, "CounterTop": 0.25, "Toilet": 0.2, "BathtubBasin": 0.15, "Cabinet": 0.15},
    "SoapBottle": {"CounterTop": 0.35, "Cabinet": 0.3, "DiningTable": 0.15, "Toilet": 0.1, "GarbageCan": 0.1},
    "SprayBottle": {"CounterTop": 0.3, "Cabinet": 0.25, "Toilet": 0.25, "GarbageCan": 0.1, "Cart": 0.1},
    "ToiletPaper": {"Toilet": 0.3, "ToiletPaperHanger": 0.25, "Cabinet": 0.25, "CounterTop": 0.2},
    # light sources for look_at_obj_in_light (not pickupable; the goal needs them in/on a receptacle)
    "DeskLamp": {"SideTable": 0.45, "Desk": 0.35, "Dresser": 0.2},
    "FloorLamp": {"SideTable": 0.6, "Dresser": 0.4},
}

LIGHT_SOURCES = ("DeskLamp", "FloorLamp")


def usual_order(object_type: str) -> tuple[str, ...]:
    """An object type's usual receptacle types, most likely first (ties keep the table's order)."""
    weights = OBJECT_PRIORS[object_type]
    return tuple(sorted(weights, key=lambda receptacle: -weights[receptacle]))


# ALFRED object affordances (the subset our rooms use).
CLEANABLE = frozenset(
    {"Apple", "Bowl", "ButterKnife", "Cloth", "Cup", "DishSponge", "Egg", "Fork", "Kettle", "Knife", "Ladle",
     "Lettuce", "Mug", "Pan", "Plate", "Pot", "Potato", "SoapBar", "Spatula", "Spoon", "Tomato"}
)  # fmt: skip
HEATABLE = frozenset({"Apple", "Bread", "Cup", "Egg", "Mug", "Plate", "Potato", "Tomato"})
COOLABLE = frozenset(
    {"Apple", "Bowl", "Bread", "Cup", "Egg", "Lettuce", "Mug", "Pan", "Plate", "Pot", "Potato", "Tomato",
     "WineBottle"}
)  # fmt: skip
RECEPTACLE_OBJECTS = frozenset({"Bowl", "Box", "Cup", "Mug", "Pan", "Plate", "Pot"})

# What each task needs: an object affordance, an appliance in the room, and a target receptacle type that is
# not the appliance itself (ALFRED never asks to "put a clean mug in sinkbasin").
TASK_OBJECT_FILTER = {
    "pick_clean_then_place_in_recep": CLEANABLE,
    "pick_heat_then_place_in_recep": HEATABLE,
    "pick_cool_then_place_in_recep": COOLABLE,
}
TASK_APPLIANCE = {
    "pick_clean_then_place_in_recep": "SinkBasin",
    "pick_heat_then_place_in_recep": "Microwave",
    "pick_cool_then_place_in_recep": "Fridge",
}


@dataclass(frozen=True)
class RoomKind:
    """A room: receptacles it always has, may have ({type: (max count, fill weight)}), and its objects."""

    essentials: tuple[str, ...]
    receptacles: dict[str, tuple[int, float]]
    objects: tuple[str, ...]
    lights: tuple[str, ...] = ()


ROOMS: dict[str, RoomKind] = {
    "kitchen": RoomKind(
        essentials=("CounterTop", "Fridge", "Microwave", "SinkBasin"),
        receptacles={
            "CounterTop": (2, 1.0), "Cabinet": (6, 3.0), "Drawer": (5, 2.0), "Fridge": (1, 0.0),
            "Microwave": (1, 0.0), "SinkBasin": (1, 0.0), "StoveBurner": (4, 1.0), "CoffeeMachine": (1, 0.6),
            "Toaster": (1, 0.4), "DiningTable": (1, 0.8), "GarbageCan": (1, 0.8), "Shelf": (3, 0.6),
        },
        objects=("Apple", "Bowl", "Bread", "ButterKnife", "Cup", "DishSponge", "Egg", "Fork", "Kettle",
                 "Knife", "Ladle", "Lettuce", "Mug", "Pan", "PepperShaker", "Plate", "Pot", "Potato",
                 "SaltShaker", "SoapBottle", "Spatula", "Spoon", "Tomato", "WineBottle"),
    ),
    "livingroom": RoomKind(
        essentials=("Sofa", "CoffeeTable", "SideTable"),
        receptacles={
            "Sofa": (1, 0.0), "ArmChair": (2, 1.0), "CoffeeTable": (1, 0.0), "SideTable": (2, 1.0),
            "TVStand": (1, 0.6), "Drawer": (4, 1.5), "Cabinet": (4, 1.5), "Shelf": (3, 1.0),
            "Dresser": (1, 0.6), "GarbageCan": (1, 0.6), "Ottoman": (1, 0.3), "Safe": (1, 0.3),
            "DiningTable": (1, 0.5),
        },
        objects=("Box", "CreditCard", "KeyChain", "Laptop", "Newspaper", "Pillow", "RemoteControl", "Statue",
                 "TissueBox", "Vase", "Watch"),
        lights=("DeskLamp", "FloorLamp"),
    ),
    "bedroom": RoomKind(
        essentials=("Bed", "Desk", "SideTable"),
        receptacles={
            "Bed": (1, 0.0), "Desk": (1, 0.0), "SideTable": (2, 1.0), "Dresser": (1, 1.0), "Drawer": (6, 2.5),
            "Shelf": (3, 1.0), "GarbageCan": (1, 0.6), "LaundryHamper": (1, 0.4), "Safe": (1, 0.3),
            "ArmChair": (1, 0.6),
        },
        objects=("AlarmClock", "Book", "CD", "CellPhone", "CreditCard", "KeyChain", "Laptop", "Pen", "Pencil",
                 "Pillow", "TissueBox"),
        lights=("DeskLamp",),
    ),
    "bathroom": RoomKind(
        essentials=("Toilet", "SinkBasin", "CounterTop"),
        receptacles={
            "Toilet": (1, 0.0), "SinkBasin": (2, 0.5), "BathtubBasin": (1, 0.8), "CounterTop": (1, 0.0),
            "Cabinet": (4, 2.0), "Drawer": (4, 1.5), "TowelHolder": (1, 0.5), "HandTowelHolder": (1, 0.5),
            "ToiletPaperHanger": (1, 0.6), "GarbageCan": (1, 0.8), "Shelf": (2, 0.8), "Cart": (1, 0.4),
        },
        objects=("Candle", "Cloth", "SoapBar", "SoapBottle", "SprayBottle", "ToiletPaper"),
    ),
}  # fmt: skip
