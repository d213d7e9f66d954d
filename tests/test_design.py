"""The architecture's rules that code can check: imports flow one way, the loop names no method."""

import ast
import inspect
from pathlib import Path

import kdcli.training
from kdcli.methods import REGISTRY, method_class

PACKAGE = Path(kdcli.training.__file__).parent


def _imports():
    """Each kdcli module -> the kdcli modules it imports (at the top or inside functions)."""
    names = {".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): p
             for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in names.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kdcli"):
                deps |= {node.module} | {f"{node.module}.{a.name}" for a in node.names} & names.keys()
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("kdcli")}
        graph[name] = (deps & names.keys()) - {name}
    return graph


def test_imports_have_no_cycles():
    graph = _imports()
    assert len(graph) > 20 and "kdcli.pipeline" in graph["kdcli.cli"]  # the graph is really read
    done, on_path = set(), []

    def visit(module):
        if module in on_path:
            raise AssertionError("import cycle: " + " -> ".join(on_path[on_path.index(module):] + [module]))
        if module in done:
            return
        on_path.append(module)
        for dep in sorted(graph[module]):
            visit(dep)
        on_path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


def test_the_training_loop_names_no_method():
    import kdcli.hooks

    loop = (kdcli.training._fit_and_refit, kdcli.training._fit, kdcli.training._Setup, kdcli.training.build_step,
            kdcli.training.TrainStep, kdcli.training._hooks, kdcli.hooks)  # the loop, its step and its hooks
    source = "\n".join(inspect.getsource(part) for part in loop)
    assert "def _replica_step" in source and "class EarlyStopping" in source  # really read
    for name in REGISTRY:
        cls = method_class(name).__name__
        assert cls not in source and f'"{name}"' not in source, name
