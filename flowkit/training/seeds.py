"""Runs that differ only in seed, trained as one program: their states and keys as one pytree.

Several seeds' pytrees are stacked on a leading axis and the chunk is vmapped over it; one seed's are kept as
they are and its chunk is not vmapped (vmapping reorders float sums, and one run's numbers stay those of the
plain program). The loop stacks and splits through Seeds and so is written once for both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp


def stack_seeds(trees: list[Any]) -> Any:
    """Per-seed pytrees (states, keys) as one pytree with a leading seed axis, as a vmapped chunk takes them."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


@dataclass(frozen=True)
class Seeds:
    """How a program holds `count` seeds' pytrees: stacked when several, as they are when one."""

    count: int

    @property
    def vectorized(self) -> bool:
        """Whether the program's chunk is vmapped over a leading seed axis."""
        return self.count > 1

    def stack(self, trees: list[Any]) -> Any:
        """The seeds' pytrees (one per seed, in order) as the program holds them."""
        return stack_seeds(trees) if self.vectorized else trees[0]

    def split(self, tree: Any) -> list[Any]:
        """A program's pytree (state, outputs) as one pytree per seed, in order."""
        if not self.vectorized:
            return [tree]
        return [jax.tree.map(lambda leaf, index=index: leaf[index], tree) for index in range(self.count)]
