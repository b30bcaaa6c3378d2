"""Role links as plain adjacency, answering pycasbin's role questions without its caches.

pycasbin's domain role manager builds (and keeps, per domain asked about) a role manager
from the domain's links plus the links of every domain its domain-matching function
accepts; ``has_link`` then walks at most ``max_hierarchy_level`` (10) levels. This module
holds the same links once, precomputes the closures of every (subject, workspace) pair
the files name, and answers other pairs with a walk bounded by what the subject can
reach, never by the size of the policy.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from casbin.rbac.default_role_manager.role_manager import DomainManager, RoleManager

Adjacency = Mapping[str, tuple[str, ...]]
Closure = tuple[frozenset[str], tuple[str, ...]]  # (g() names, implicit roles in BFS order)
_DEFAULT_MATCHING = "DomainManagerBase.__init__.<locals>.<lambda>"
_UNLISTED: str | None = None  # the key of every domain no link names


class UnsupportedRoles(Exception):
    """The role manager does something this module does not reproduce."""


def _adjacency(links: Any) -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {}
    for link in links:
        out.setdefault(str(link[0]), []).append(str(link[1]))
    return {name: tuple(dict.fromkeys(roles)) for name, roles in out.items()}


class RoleGraph:
    """The links of one role type (``g``), per domain, with precomputed closures."""

    def __init__(
        self,
        by_domain: dict[str | None, dict[str, tuple[str, ...]]],
        star: str | None,
        max_level: int,
        domains: bool,
    ) -> None:
        self._by_domain = by_domain
        self._star = star  # the domain whose links hold in every other domain, if any
        self._max_level = max_level
        self.domains = domains  # whether g takes a domain (g = _, _, _)
        self._closures: dict[tuple[str | None, str], Closure] = {}
        # Equal closures are one object: the 100,000-line growth policy has 14,202 pairs
        # but 8,028 distinct closures (the "*" subjects reach the same roles almost
        # everywhere).
        shared: dict[Closure, Closure] = {}
        for key, adjacency in by_domain.items():
            sources = set(adjacency)
            if star is not None and key != star:
                sources |= set(by_domain.get(star, {}))
            for subject in sources:
                found = self._compute(key, subject)
                self._closures[(key, subject)] = shared.setdefault(found, found)

    @classmethod
    def from_manager(
        cls, manager: Any, star_matcher: Callable[[str, str], bool] | None
    ) -> RoleGraph:
        """Read the links of a pycasbin role manager.

        Args:
            manager: ``DomainManager`` (``g = _, _, _``) or ``RoleManager`` (``g = _, _``).
            star_matcher: The only domain-matching function reproduced: a binding in
                ``"*"`` holds in every domain (``enforcer.workspace_matches``).

        Raises:
            UnsupportedRoles: For pattern matching functions or another domain matcher.
        """
        if type(manager) is DomainManager:
            matching = getattr(manager.matching_func, "__qualname__", "")
            if matching != _DEFAULT_MATCHING:
                raise UnsupportedRoles("a role name matching function is set")
            domain_fn = manager.domain_matching_func
            if domain_fn is not None and domain_fn is not star_matcher:
                raise UnsupportedRoles("an unknown domain matching function is set")
            by_domain: dict[str | None, dict[str, tuple[str, ...]]] = {
                str(domain): _adjacency(links) for domain, links in manager.all_links.items()
            }
            by_domain.setdefault(_UNLISTED, {})
            star = "*" if domain_fn is not None else None
            return cls(by_domain, star, manager.max_hierarchy_level, domains=True)
        if type(manager) is RoleManager:
            if manager.matching_func is not None:  # (it never uses a domain matcher)
                raise UnsupportedRoles("a role name matching function is set")
            graph = {_UNLISTED: _adjacency(manager.all_links)}
            return cls(graph, None, manager.max_hierarchy_level, domains=False)
        raise UnsupportedRoles(f"role manager {type(manager).__name__}")

    def _key(self, domain: str) -> str | None:
        return domain if self.domains and domain in self._by_domain else _UNLISTED

    def _layers(self, key: str | None) -> list[Adjacency]:
        layers: list[Adjacency] = [self._by_domain.get(key, {})]
        if self._star is not None and key != self._star and self._star in self._by_domain:
            layers.append(self._by_domain[self._star])
        return layers

    def _compute(self, key: str | None, subject: str) -> Closure:
        layers = self._layers(key)
        # g(): names within max_level - 1 hops, the subject itself included (pycasbin's BFS).
        matched = {subject}
        frontier = {subject}
        for _ in range(self._max_level - 1):
            frontier = {r for n in frontier for layer in layers for r in layer.get(n, ())}
            frontier -= matched
            if not frontier:
                break
            matched |= frontier
        # get_implicit_roles_for_user: every name one or more hops away, in BFS order.
        implicit: dict[str, None] = {}
        queue = [subject]
        while queue:
            name = queue.pop(0)
            for layer in layers:
                for role in layer.get(name, ()):
                    if role not in implicit:
                        implicit[role] = None
                        queue.append(role)
        return frozenset(matched), tuple(implicit)

    def closure(self, subject: str, domain: str) -> Closure:
        """(names ``g(subject, name, domain)`` holds for, implicit roles) of a subject."""
        key = self._key(domain)
        found = self._closures.get((key, subject))
        if found is None:
            if not any(subject in layer for layer in self._layers(key)):
                return frozenset((subject,)), ()
            found = self._compute(key, subject)  # bounded by the reachable names
        return found
