"""Base-model training: typed YAML recipes, one engine for one process or many (torchrun, gloo), exact resume.

    from zephyra.training import load_recipe, train
    result = train(load_recipe("recipes/phase1.yaml", ["max_steps=100"]))

    zephyra train base recipes/phase1.yaml max_steps=100
    torchrun --standalone --nproc_per_node 2 -m zephyra.training base recipes/phase1.yaml
"""

from .._lazy import exports

__getattr__, __dir__, __all__ = exports(__name__, {
    "checkpoint": ["CheckpointError", "verify"],
    "config": ["DataSource", "ModelSpec", "RecipeError", "TrainConfig", "config_from_dict", "load_recipe"],
    "..errors": ["DataError"],
    "trainer": ["train"],
    "adapter": ["AdapterRecipe", "load_adapter_recipe", "train_adapter"],
})
