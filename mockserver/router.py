"""Method + path -> operation: the routing table, built once from the specs."""

from __future__ import annotations

from typing import Any

from .spec import Operation, Spec, SpecError


class Router:
    """Method + path -> operation, built once. Tells an unknown path (404) from a wrong method (405)."""

    def __init__(self, specs: list[Spec]) -> None:
        self.literal: dict[str, dict[str, Operation]] = {}
        self.templated: list[tuple[Any, str, dict[str, Operation]]] = []
        templated: dict[str, dict[str, Operation]] = {}
        for spec in specs:
            for op in spec.operations:
                table = self.literal if op.pattern is None else templated
                if op.method in table.setdefault(op.path, {}):
                    raise SpecError(f"{op.key} is declared twice ({spec.source}).")
                table[op.path][op.method] = op
        for path, methods in templated.items():
            self.templated.append((next(iter(methods.values())).pattern, path, methods))
        # The methods each path allows, as a 405 lists them: sorted once, shared by every match (read-only).
        self.allowed = {path: sorted(methods) for path, methods in [*self.literal.items(), *templated.items()]}
        self.specs = specs

    def match(self, method: str, path: str) -> tuple[Operation | None, list[str], dict[str, str]]:
        """(operation, methods allowed on the path, path parameters)."""
        methods = self.literal.get(path)
        if methods is not None:
            return methods.get(method), self.allowed[path], {}
        for pattern, template, candidates in self.templated:
            found = pattern.match(path)
            if found:
                return candidates.get(method), self.allowed[template], found.groupdict()
        return None, [], {}

    def provider_of(self, path: str) -> Spec | None:
        """The provider whose paths share the longest prefix with `path` (None on a tie or no overlap)."""
        scores: dict[str, int] = {}
        for spec in self.specs:
            for op in spec.operations:
                common = 0
                for a, b in zip(op.path, path):
                    if a != b:
                        break
                    common += 1
                scores[spec.provider.name] = max(scores.get(spec.provider.name, 0), common)
        ranked = sorted(((score, name) for name, score in scores.items()), reverse=True)
        if not ranked or ranked[0][0] <= len("/api/") or (len(ranked) > 1 and ranked[0][0] == ranked[1][0]):
            return None
        return next(s for s in self.specs if s.provider.name == ranked[0][1])
