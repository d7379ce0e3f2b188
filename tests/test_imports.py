# SPDX-License-Identifier: BSD-3-Clause
"""Dependency direction: the core loads no Qt, and inference loads no part of the trainer."""

import subprocess
import sys


def _loaded_after(imports: str) -> set[str]:
    code = f"import sys; {imports}; print('\\n'.join(sorted(sys.modules)))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return set(r.stdout.split())


CORE = [
    "napari_ppii.io",
    "napari_ppii.synthesis",
    "napari_ppii.models",
    "napari_ppii.training",
    "napari_ppii.evaluation",
    "napari_ppii.evaluation.report",
    "napari_ppii.predict",
    "napari_ppii.preview",
    "napari_ppii.anatomy",
    "napari_ppii.realism",
    "napari_ppii.cli",
    "napari_ppii.training.process",
    "napari_ppii.workflows",
]


def test_core_modules_load_no_qt():
    mods = _loaded_after("; ".join(f"import {m}" for m in CORE))
    assert set(CORE) <= mods
    qt = sorted(
        m
        for m in mods
        if m.split(".")[0] in ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui", "superqt", "vispy")
    )
    assert not qt, qt


def test_the_configuration_loads_without_scipy_or_torch():
    """``napari_ppii.config`` registers the synthesis methods (their parameter models) but loads no solver:
    the configuration, the CLI's first import and the widgets' settings stay light."""
    mods = _loaded_after("import napari_ppii.config; napari_ppii.config.PPIIConfig()")
    assert "napari_ppii.synthesis.ppii" in mods
    assert not [m for m in mods if m.split(".")[0] in ("scipy", "torch")]


def test_the_command_lines_parser_loads_no_torch():
    """Every ``ppii`` command builds the whole parser first (its options name the prior and test-time
    augmentation defaults): that must not load torch, or ``ppii --help`` / ``ppii info`` wait for it."""
    mods = _loaded_after("from napari_ppii.cli import build_parser; build_parser()")
    assert "napari_ppii.tta" in mods and "napari_ppii.prior" in mods
    assert not [m for m in mods if m.split(".")[0] == "torch"]


def test_inference_loads_no_training_module():
    mods = _loaded_after("import napari_ppii.predict; from napari_ppii.predict import Predictor, predict_batch")
    assert not [m for m in mods if m.startswith("napari_ppii.training")]


def _package_imports() -> dict[str, set[str]]:
    """Module -> the package modules it imports (relative or absolute, at any depth of the file: a lazy
    import inside a function counts).  ``from pkg import name`` is an import of ``pkg.name`` where that is
    a module, else of ``pkg``."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "src" / "napari_ppii"
    files = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        files[".".join(parts[:-1] if is_pkg else parts)] = (path, parts[:-1])
    graph: dict[str, set[str]] = {}
    for name, (path, pkg) in files.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg[: len(pkg) - node.level + 1] if node.level > 1 else pkg
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                if mod.startswith("napari_ppii"):
                    for a in node.names:
                        deps.add(f"{mod}.{a.name}" if f"{mod}.{a.name}" in files else mod)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("napari_ppii"))
        graph[name] = {d for d in deps if d in files and d != name}
    return graph


def _assert_no_circle(graph: dict[str, set[str]]) -> None:
    seen, stack = set(), []

    def visit(m):
        assert m not in stack, f"import circle: {' -> '.join(stack[stack.index(m) :] + [m])}"
        if m in seen:
            return
        stack.append(m)
        for d in sorted(graph[m]):
            visit(d)
        stack.pop()
        seen.add(m)

    for m in sorted(graph):
        visit(m)


#: The package's layers, lowest first: a module imports only from its own layer or the ones below it.
LAYERS = [
    {"errors"},
    {"io", "anatomy", "device", "checkpoint", "models"},
    {"synthesis", "prior", "tta"},  # synthesis holds its own settings (synthesis/settings.py) and the methods
    {"config"},  # the one configuration: synthesis settings + preprocess, model, data, training sections
    {"preprocess"},
    {"evaluation", "realism", "predict", "training"},
    {"workflows", "preview"},
    {"cli", "__main__", "_app", "_layers", "_reader", "_sample_data", "_widgets"},  # the front ends
]


def test_no_import_circle_and_no_import_from_a_layer_above():
    """The whole package, module by module, lazy imports included: no import circle; and each top-level
    part imports only from its own layer or those below it (the core never reaches up to the front ends)."""
    graph = _package_imports()
    assert {"napari_ppii.training.loop", "napari_ppii.synthesis.settings", "napari_ppii.config"} <= set(graph)
    _assert_no_circle(graph)
    layer = {part: i for i, parts in enumerate(LAYERS) for part in parts}

    def part(m):
        return m.split(".")[1] if m.count(".") else None

    parts = {part(m) for m in graph} - {None}
    assert parts <= set(layer), f"parts without a layer: {sorted(parts - set(layer))}"
    upward = sorted(
        f"{m} -> {d}"
        for m, deps in graph.items()
        for d in deps
        if part(m) and part(d) and layer[part(d)] > layer[part(m)]
    )
    assert not upward, upward


def test_training_package_has_no_import_circle():
    graph = _package_imports()
    training = {m for m in graph if m.startswith("napari_ppii.training.")}
    assert {
        "napari_ppii.training.loop",
        "napari_ppii.training.select",
        "napari_ppii.training.validate",
        "napari_ppii.training.stop",
    } <= training
    _assert_no_circle({m: graph[m] & training for m in training})


def test_every_source_file_has_an_spdx_header():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    files = [p for d in ("src", "tests", "benchmarks", "scripts") for p in (root / d).rglob("*.py")]
    tag = "SPDX-License-Identifier: BSD-3-Clause"
    missing = [str(p.relative_to(root)) for p in files if tag not in p.read_text()[:300]]
    assert not missing, missing


def test_lint_is_clean():
    """``ruff check`` (pyproject's [tool.ruff]: pyflakes, pycodestyle, lines <= 120) passes on the whole tree, and
    ``ruff format --check`` finds nothing to reformat."""
    import shutil
    from pathlib import Path

    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        import pytest

        pytest.skip("ruff is not installed (pip install 'napari-ppii[test]')")
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run(
        [ruff, "check", "src", "tests", "benchmarks", "scripts"], cwd=root, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stdout[-3000:]
    r = subprocess.run(
        [ruff, "format", "--check", "src", "tests", "benchmarks", "scripts"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, "ruff format would reformat:\n" + r.stdout[-3000:]
