"""The one table of the shipped Fashion-MNIST zoo: names, architectures, training recipes, threat models.

Plain data, imported by the registry (names), the training recipes and the zoo
evaluation; nothing else lists zoo names.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class ZooEntry:
    arch: str
    arch_kwargs: dict
    recipe: dict                        # TrainConfig settings
    threats: tuple = ()                 # (norm, eps) pairs the model is evaluated under


ZOO: dict[str, ZooEntry] = {
    "fmnist-std-cnn": ZooEntry("cnn-small", {}, {"recipe": "standard", "epochs": 8, "lr": 0.05},
                               (("inf", 0.1), ("2", 1.5))),
    "fmnist-at-linf-cnn": ZooEntry("cnn-small", {}, {"recipe": "pgd", "epochs": 6, "lr": 0.05, "eps": 0.1,
                                                     "norm": "inf", "attack_steps": 5}, (("inf", 0.1),)),
    # l2 budget 1.5: about half the l2 length of the l_inf ball's corner (0.1 * 28 = 2.8), a
    # perceptible-but-label-preserving change on 28x28 images, the usual MNIST-family scale.
    "fmnist-at-l2-cnn": ZooEntry("cnn-small", {}, {"recipe": "pgd", "epochs": 5, "lr": 0.05, "eps": 1.5, "norm": "2",
                                                   "attack_steps": 5}, (("2", 1.5),)),
    "fmnist-trades-linf-cnn": ZooEntry("cnn-small", {}, {"recipe": "trades", "epochs": 6, "lr": 0.05, "eps": 0.1,
                                                         "norm": "inf", "attack_steps": 5, "trades_beta": 6.0},
                                       (("inf", 0.1),)),
    "fmnist-noise-0.12-cnn": ZooEntry("cnn-small", {}, {"recipe": "noise", "epochs": 6, "lr": 0.05, "sigma": 0.12}),
    "fmnist-noise-0.25-cnn": ZooEntry("cnn-small", {}, {"recipe": "noise", "epochs": 6, "lr": 0.05, "sigma": 0.25}),
    "fmnist-noise-0.50-cnn": ZooEntry("cnn-small", {}, {"recipe": "noise", "epochs": 6, "lr": 0.05, "sigma": 0.50}),
    # 1-Lipschitz logits (no logit scale); margin sqrt(2) * 0.5 in the loss targets certified radius 0.5.
    "fmnist-lipschitz": ZooEntry("lipschitz-cnn", {"logit_scale": 1.0},
                                 {"recipe": "lipschitz", "epochs": 7, "lr": 3e-3, "optimizer": "adam",
                                  "weight_decay": 0.0, "temperature": 10.0, "margin": 0.7}),
}

ZOO_NAMES = tuple(ZOO)


def threat_tag(norm: str, eps: float) -> str:
    """The metric-key suffix of a threat model, e.g. ``linf-0.1`` (the cards' ``pgd20-linf-0.1``)."""
    return f"{'linf' if norm == 'inf' else 'l2'}-{eps}"
