"""Generated hierarchies: the test bed that the hierarchy defaults are checked on (tests and
``benchmarks/hierarchy_sweep.py``), so that they hold on trees that look nothing like WordNet.

Every generator returns a :class:`~hypalign.data.hierarchy.Hierarchy` whose node names are opaque strings
(``"n"`` + 8 hex digits, a fixed function of the seed and the node) listed in a shuffled order, so nothing can
lean on names or on the node order being topological. Shapes:

* :func:`random_recursive_tree` — node ``i`` attaches to an earlier node drawn by ``rule``: ``uniform`` (among all
  earlier nodes: depth ~ ``ln n``), ``first_half`` (uniform among the first half made so far: a few hubs with very
  many children), ``preferential`` (probability ~ 1 + number of children: Barabási–Albert style, heavy-tailed
  branching), ``recent`` (among the last 3 made: long thin chains, depth ~ ``n / 2``);
* :func:`balanced_tree` — every inner node has ``branching`` children, ``depth`` levels below the root;
* :func:`caterpillar` — a spine of ``n // (1 + legs)`` nodes, each with ``legs`` leaves: very unbalanced, deep;
* :func:`path` — a chain (the deepest tree of its size);
* :func:`random_dag` — a uniform random recursive tree in which every node after the first ``roots`` also takes,
  with probability ``p_extra``, a second parent drawn among earlier nodes (a DAG, like GO).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hypalign.data.hierarchy import Hierarchy

RULES = ("uniform", "first_half", "preferential", "recent")


def _named(parent_lists: list[list[int]], seed: int) -> Hierarchy:
    """A :class:`Hierarchy` of nodes ``0..n-1`` (parents before children) with opaque names, listed shuffled."""
    n = len(parent_lists)
    rng = np.random.default_rng([seed, 7919])
    perm = rng.permutation(n)  # node i is listed at position perm[i]
    tags = rng.choice(16**8, size=n, replace=False)
    names = [""] * n
    for i in range(n):
        names[perm[i]] = f"n{int(tags[i]):08x}"
    edges = [(int(perm[c]), int(perm[p])) for c, ps in enumerate(parent_lists) for p in ps]
    return Hierarchy(names, np.asarray(sorted(edges), dtype=np.int64).reshape(-1, 2))


def random_recursive_tree(n: int, rule: str = "uniform", seed: int = 0) -> Hierarchy:
    """A random recursive tree of ``n`` nodes: node ``i >= 1`` takes one parent among nodes ``0..i-1`` drawn by
    ``rule`` (module docstring). One root."""
    if rule not in RULES:
        raise ValueError(f"rule {rule!r}: expected one of {', '.join(RULES)}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    parents: list[list[int]] = [[]]
    weight = np.zeros(n)
    weight[0] = 1.0
    for i in range(1, n):
        if rule == "uniform":
            p = int(rng.integers(i))
        elif rule == "first_half":
            p = int(rng.integers(max(1, (i + 1) // 2)))
        elif rule == "recent":
            p = int(rng.integers(max(0, i - 3), i))
        else:  # preferential: 1 + children
            w = weight[:i]
            p = int(np.searchsorted(np.cumsum(w), rng.random() * w.sum(), side="right"))
            p = min(p, i - 1)
            weight[p] += 1.0
        weight[i] = 1.0
        parents.append([p])
    return _named(parents, seed)


def balanced_tree(branching: int, depth: int, seed: int = 0) -> Hierarchy:
    """A complete ``branching``-ary tree with ``depth`` levels below its root (``(b^(depth+1) - 1) / (b - 1)``
    nodes)."""
    if branching < 1 or depth < 0:
        raise ValueError(f"need branching >= 1 and depth >= 0, got {branching}, {depth}")
    parents: list[list[int]] = [[]]
    level = [0]
    for _ in range(depth):
        nxt = []
        for p in level:
            for _ in range(branching):
                parents.append([p])
                nxt.append(len(parents) - 1)
        level = nxt
    return _named(parents, seed)


def caterpillar(n: int, legs: int = 3, seed: int = 0) -> Hierarchy:
    """A spine (a chain from the root) in which every spine node also has ``legs`` leaf children; ``n`` nodes in
    all (the last spine node takes what is left)."""
    if n < 1 or legs < 0:
        raise ValueError(f"need n >= 1 and legs >= 0, got {n}, {legs}")
    parents: list[list[int]] = [[]]
    spine = 0
    while len(parents) < n:
        for _ in range(legs):
            if len(parents) < n:
                parents.append([spine])
        if len(parents) < n:
            parents.append([spine])
            spine = len(parents) - 1
    return _named(parents, seed)


def path(n: int, seed: int = 0) -> Hierarchy:
    """A chain of ``n`` nodes (each the parent of the next)."""
    return caterpillar(n, legs=0, seed=seed)


def random_dag(n: int, p_extra: float = 0.3, seed: int = 0) -> Hierarchy:
    """A uniform random recursive tree in which each node ``i >= 2`` also takes, with probability ``p_extra``, a
    second parent drawn uniformly among ``0..i-1`` (other than its first): a DAG with multiple parents."""
    if n < 1 or not 0 <= p_extra <= 1:
        raise ValueError(f"need n >= 1 and 0 <= p_extra <= 1, got {n}, {p_extra}")
    rng = np.random.default_rng(seed)
    parents: list[list[int]] = [[]]
    for i in range(1, n):
        p = int(rng.integers(i))
        ps = [p]
        if i >= 2 and rng.random() < p_extra:
            q = int(rng.integers(i - 1))
            ps.append(q if q < p else q + 1)
        parents.append(ps)
    return _named(parents, seed)


#: the generated test bed: name -> a function of the seed (``benchmarks/hierarchy_sweep.py``; tests use a few)
TEST_BED: dict[str, Callable[[int], Hierarchy]] = {
    "rrt-uniform-400": lambda s: random_recursive_tree(400, "uniform", s),
    "rrt-first-half-400": lambda s: random_recursive_tree(400, "first_half", s),
    "rrt-preferential-1000": lambda s: random_recursive_tree(1000, "preferential", s),
    "rrt-recent-200": lambda s: random_recursive_tree(200, "recent", s),
    "rrt-uniform-5000": lambda s: random_recursive_tree(5000, "uniform", s),
    "balanced-2x9": lambda s: balanced_tree(2, 9, s),
    "balanced-10x3": lambda s: balanced_tree(10, 3, s),
    "caterpillar-300": lambda s: caterpillar(300, 3, s),
    "path-100": lambda s: path(100, s),
    "dag-500": lambda s: random_dag(500, 0.3, s),
    "dag-1500": lambda s: random_dag(1500, 0.3, s),
}
