"""The package's modules import each other in one direction only (issue 16).

Every import counts, a function-level one too: a cycle hidden inside a function
is still a cycle for whoever reads or moves the code.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "wagtail_maillog"


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if "migrations" in parts:
            continue
        name = ".".join(parts).removesuffix(".__init__")
        found[name] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports, at any level of its code."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # ``from . import status`` imports the module wagtail_maillog.status
            targets = [f"{target}.{a.name}" for a in node.names] + [target]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        for target in targets:
            if target in modules and target != name:
                found.add(target)
                break
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                other = stack.pop()
                group.append(other)
                if other == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_no_module_imports_one_that_imports_it_back():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert "wagtail_maillog.events" in graph["wagtail_maillog.addresses.health"]  # it reads
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


#: What makes a module glue on top (the Wagtail admin, public pages, checks, commands):
#: each capability keeps these beside its domain code (docs/architecture.md).
ADMIN_PARTS = {
    "views", "tables", "filters", "search", "access", "panels", "bulk_actions", "urls",
    "forms", "list_views", "public_views", "public_urls", "webhook_urls", "wagtail_hooks",
    "checks", "apps",
}  # fmt: skip


def _is_admin(name: str) -> bool:
    return name.rpartition(".")[2] in ADMIN_PARTS or name.startswith(
        (
            "wagtail_maillog.admin",
            "wagtail_maillog.log",
            "wagtail_maillog.templatetags",
            "wagtail_maillog.management",  # commands: entry points, like the admin
        )
    )


def test_nothing_below_the_admin_imports_it():
    """Every capability works without the Wagtail admin (commands, tasks, webhooks)."""
    modules = _modules()
    wrong = {
        name: sorted(t for t in _imports(name, path, modules) if _is_admin(t))
        for name, path in modules.items()
        if not _is_admin(name)
    }
    assert {name: found for name, found in wrong.items() if found} == {}


def test_each_capability_keeps_its_admin_beside_it():
    modules = _modules()
    for capability in ("log", "outbox", "addresses", "mailings"):
        assert f"wagtail_maillog.{capability}.wagtail_hooks" in modules
        assert f"wagtail_maillog.{capability}.views" in modules
    root = (PACKAGE / "wagtail_hooks.py").read_text()
    assert "@hooks.register" not in root and "hooks.register(" not in root  # it only gathers


def test_no_module_of_the_shared_admin_is_named_after_a_capability():
    names = {p.stem for p in (PACKAGE / "admin").glob("*.py")}
    capabilities = ("log", "outbox", "address", "mailing", "webhook")
    assert not [n for n in names if n.startswith(capabilities)], names


def test_the_panels_import_from_one_place_as_in_0_1_0():
    from wagtail_maillog.addresses.panels import AddressStatusPanel
    from wagtail_maillog.admin.panels import AddressStatusPanel as old_status
    from wagtail_maillog.admin.panels import RelatedMailPanel as old_related
    from wagtail_maillog.log.panels import RelatedMailPanel

    assert (old_related, old_status) == (RelatedMailPanel, AddressStatusPanel)
