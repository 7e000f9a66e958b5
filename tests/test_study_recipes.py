"""The shipped configs against the studies' published recipes.

The tables below are written out here from the studies' recipe table (docs/science.md#study-recipes),
independently of the study code: the ``full`` scale of every network study must equal them key by key
(after the study's own defaults fill the keys a config leaves out), and every scale of every network
study must state the parameterisation its networks are trained in.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib

import pytest

from nwcorrupt.experiments import catalog

P_MAIN = tuple(round(0.85 + 0.01 * i, 2) for i in range(16))  # 0.85:0.01:1.0

ERF_NET = {"activation": "erf", "depth": 3, "W_std": 1.0, "b_std": 0.0, "parameterization": "standard"}
MAIN_TRAINING = {"epochs": 30, "batch_size": 250, "learning_rate": 1e-4}
RELU_NET = {"depth": 4, "width": 128, "parameterization": "standard", "init": "torch_default"}
RELU_TRAINING = {"epochs": 20, "batch_size": 128, "learning_rate": 1e-3}

RECIPES = {
    "accuracy_vs_corruption": {
        "datasets": ("mnist", "fashion_mnist", "kmnist"), "noise": "replacement",
        "ps": tuple(round(0.1 * i, 1) for i in range(11)), "n_train": 0, "n_test": 0, "repeats": 100,
        **RELU_NET, **RELU_TRAINING,
    },
    "ptrain_ptest": {
        "dataset": "mnist", "noise": "replacement",
        "p_train": tuple(round(0.05 * i, 2) for i in range(21)),
        "p_test": tuple(round(0.0125 * i, 4) for i in range(81)),
        "n_train": 0, "repeats": 20, **RELU_NET, **RELU_TRAINING,
    },
    "centroid_comparison": {
        "datasets": ("mnist", "fashion_mnist", "kmnist"), "noises": ("replacement", "additive"), "ps": P_MAIN,
        "p_ref": 0.97, "n_train": 4000, "n_test": 0, "width": 2048, "k": 20, "m": 10, **ERF_NET, **MAIN_TRAINING,
    },
    "finite_vs_infinite": {
        "dataset": "mnist", "noises": ("replacement", "additive"), "ps": P_MAIN, "n_train": 4000, "n_test": 0,
        "widths": (128, 256, 512, 1024, 2048, 4096), "k": 20, "m": 10, **ERF_NET, **MAIN_TRAINING,
    },
    "heavy_corruption": {  # the main job: the main recipe on MNIST
        "dataset": "mnist", "noises": ("additive", "replacement"), "ps": P_MAIN, "n_train": 4000, "n_test": 0,
        "width": 2048, "k": 20, "m": 10, **ERF_NET, **MAIN_TRAINING,
    },
    "snr_sweep": {
        "dataset": "mnist", "noises": ("additive", "replacement"), "p": 0.97, "sizes": (28, 43, 55, 64),
        "n_trains": (1000, 2000, 3000, 4000), "n_test": 0, "width": 2048, "k": 20, "m": 10,
        **ERF_NET, "epochs": 25, "batch_size": 100, "learning_rate": 1e-4,
    },
    "activations": {
        "dataset": "mnist", "noise": "additive", "ps": tuple(round(0.9 + 0.01 * i, 2) for i in range(11)),
        "activations": ("erf", "tanh", "gelu", "swish"), "n_train": 4000, "n_test": 0, "width": 2048,
        "k": 50, "m": 1, "depth": 3, "W_std": 1.0, "b_std": 0.0, "parameterization": "standard",
        "epochs": 20, "batch_size": 250, "learning_rate": 1e-4,
    },
    # the combined p x r sweep trains the networks of the main input-corruption recipe
    "labels_and_inputs": {
        "dataset": "mnist", "n_train": 4000, "n_test": 0, "width": 2048, "k": 20, "m": 10, **ERF_NET, **MAIN_TRAINING,
    },
    # Rolnick et al.: MLPs with 0, 1, 2, 4 hidden layers, batch 128, Adadelta, alpha up to 100; structured
    # noise at alpha = 20 in three orderings; batch sizes 32..256 and the infinite-batch limit; noise sources
    "dilution": {
        "dataset": "mnist", "depths": (0, 1, 2, 4), "batch_size": 128, "optimizer": "adadelta", "source": "pool",
        "parameterization": "standard", "init": "torch_default", "structured_alpha": 20.0,
        "orders": ("confusing", "reverse", "random"), "batch_sizes": (32, 64, 128, 256, 0),
        "sources": ("pool", "copies", "external", "white"),
    },
    # Li et al.: symmetric r in {0, 0.2, 0.5, 0.8}, pair and instance-dependent noise, MNIST and Fashion-MNIST;
    # probes from few clean examples per class up; PyTorch-style standard layers
    "predictive_power": {
        "datasets": ("mnist", "fashion_mnist"),
        "label_noises": ("symmetric:0", "symmetric:0.2", "symmetric:0.5", "symmetric:0.8", "pair:0.4", "instance:0.5"),
        "parameterization": "standard", "init": "torch_default", "n_train": 0, "n_test": 0,
    },
    # Li et al.'s alignment experiment: a planted-marker task and the digit task, noise given by the other
    # label, an MLP beside a translation-invariant pooled CNN; the same PyTorch-style recipe
    "alignment": {
        "datasets": ("mnist", "fashion_mnist"), "tasks": ("position", "digit"), "archs": ("mlp", "pooled"),
        "parameterization": "standard", "init": "torch_default", "n_train": 0, "n_test": 0, "hidden": 2,
        "width": 512, "learning_rate": 1e-3, "epochs": 50, "batch_size": 128, "size": 0, "marker": 3,
    },
    # Si et al. (LIP): ridge heads on NNGP/NTK, random and trained features; trained heads on squared and
    # cross-entropy losses; PyTorch-style standard layers
    "principal_subspace": {
        "features": ("nngp", "ntk", "random", "trained"), "losses": ("mse", "cross_entropy"),
        "parameterization": "standard", "init": "torch_default",
    },
}


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=1e-12)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("study", sorted(RECIPES))
def test_full_scale_is_the_published_recipe(study):
    params = dataclasses.asdict(catalog.load(study, "full").params)
    wrong = {k: (params.get(k), v) for k, v in RECIPES[study].items() if not _same(params.get(k), v)}
    assert not wrong, f"{study} full scale differs from the recipe (config, recipe): {wrong}"


@pytest.mark.parametrize("study", sorted(RECIPES))
def test_every_scale_states_its_parameterisation(study):
    doc = tomllib.loads(catalog.text(study))
    scales = [k for k, v in doc.items() if isinstance(v, dict)]
    assert {"quick", "full"} <= set(scales)
    for scale in scales:
        assert doc[scale].get("parameterization") == "standard", f"{study} [{scale}] must state parameterization"
        if "init" in RECIPES[study]:
            assert doc[scale].get("init") == "torch_default", f"{study} [{scale}] must state init"


def test_quick_scales_keep_the_recipe_of_the_network():
    """Quick scales are the recipe made smaller: same parameterisation, initialisation, optimiser step
    and batch for the erf studies whose networks are compared with the kernels."""
    for study in ("centroid_comparison", "finite_vs_infinite", "heavy_corruption", "labels_and_inputs"):
        params = catalog.load(study, "quick").params
        assert params.parameterization == "standard"
        assert params.learning_rate == 1e-4 and params.batch_size == 250 and params.epochs == 30, study
    for study in ("accuracy_vs_corruption", "ptrain_ptest"):
        params = catalog.load(study, "quick").params
        assert (params.init, params.learning_rate, params.batch_size, params.epochs) == ("torch_default", 1e-3, 128, 20)
        assert params.n_train == 0, f"{study}: the cheap studies train on the full training set at every scale"


def test_dilution_scales_keep_the_recipe_and_reach_alpha_100():
    full = catalog.load("dilution", "full").params
    assert max(full.alphas) == 100 and min(full.alphas) == 0 and full.deltas[0] == 0.0 and full.deltas[-1] == 1.0
    quick = catalog.load("dilution", "quick").params
    for key in ("depths", "batch_size", "optimizer", "learning_rate", "epochs", "width", "parameterization", "init",
                "source", "orders", "batch_sizes", "sources", "structured_alpha"):
        assert _same(getattr(quick, key), getattr(full, key)), key


def test_probe_and_subspace_quick_scales_keep_the_network_recipe():
    full = catalog.load("predictive_power", "full").params
    quick = catalog.load("predictive_power", "quick").params
    for key in ("hidden", "width", "parameterization", "init", "learning_rate", "epochs", "batch_size", "probe_ridge",
                "label_noises", "datasets", "inputs", "composed_label_noises"):
        assert _same(getattr(quick, key), getattr(full, key)), key
    assert min(full.ms) == 1 and max(full.ms) >= 1000 and set(quick.ms) <= set(full.ms)
    full = catalog.load("alignment", "full").params
    quick = catalog.load("alignment", "quick").params
    for key in ("hidden", "width", "parameterization", "init", "learning_rate", "batch_size", "probe_ridge", "tasks",
                "archs", "border"):
        assert _same(getattr(quick, key), getattr(full, key)), key
    assert set(quick.noise_rates) <= set(full.noise_rates) and set(quick.ms) <= set(full.ms)
    full = catalog.load("principal_subspace", "full").params
    quick = catalog.load("principal_subspace", "quick").params
    for key in ("hidden", "width", "parameterization", "init", "learning_rate", "epochs", "batch_size", "features",
                "losses", "parts", "angle_ks", "dataset"):
        assert _same(getattr(quick, key), getattr(full, key)), key
    assert set(quick.ps) <= set(full.ps) and set(quick.ridges) <= set(full.ridges)
