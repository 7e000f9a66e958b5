"""Package-level behaviour: lazy submodules, no side effects, validation inside jit."""

from __future__ import annotations

import ast
import math
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nwcorrupt import _checks


def test_every_submodule_is_reachable_lazily_without_flipping_x64():
    code = (
        "import importlib, jax, nwcorrupt\n"
        "for name in nwcorrupt._SUBMODULES:\n"
        "    importlib.util.find_spec('nwcorrupt.' + name) is not None or print('missing', name)\n"
        "import nwcorrupt.kernels\n"
        "assert nwcorrupt.predict.__name__ == 'nwcorrupt.predict'\n"
        "assert nwcorrupt.theory.__name__ == 'nwcorrupt.theory'\n"
        "assert not jax.config.read('jax_enable_x64')\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "ok"


def test_check_array_works_on_traced_values():
    @jax.jit
    def f(x):
        _checks.check_array("x", x, ndim=2)
        _checks.check_matrix("x", x)
        return x * 2

    assert float(f(jnp.ones((2, 3))).sum()) == 12.0
    with pytest.raises(ValueError, match="x must be 2-dimensional"):
        jax.jit(lambda x: _checks.check_array("x", x, ndim=2))(jnp.ones(3))


# --- the shared validators -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, kwargs, message",
    [
        (-1, dict(lo=0.0), "tol must be a finite number >= 0, got -1"),
        (0.0, dict(lo=0.0, lo_open=True), "tol must be a finite number > 0, got 0.0"),
        (float("nan"), dict(lo=0.0, allow_inf=True), r"tol must be a number >= 0 \(inf allowed\), got nan"),
        (float("inf"), dict(lo=0.0), "tol must be a finite number >= 0, got inf"),
        (1.0, dict(lo=0.0, hi=1.0, hi_open=True), r"tol must be in \[0, 1\), got 1.0"),
        (0.0, dict(lo=0.0, hi=1.0, lo_open=True, note="why"), r"tol must be in \(0, 1\] \(why\), got 0.0"),
        (2.5, dict(hi=2.0), "tol must be a finite number <= 2, got 2.5"),
        (np.array(-2.0), dict(lo=0.0), "tol must be a finite number >= 0, got -2.0"),
    ],
)
def test_check_real_names_the_argument_and_the_expected_range(value, kwargs, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        _checks.check_real("tol", value, **kwargs)


def test_check_real_accepts_numbers_and_0d_arrays_only():
    assert _checks.check_real("x", 3) == 3.0 and type(_checks.check_real("x", 3)) is float
    assert _checks.check_real("x", np.float32(0.5), lo=0.0, hi=1.0) == 0.5
    assert _checks.check_real("x", jnp.asarray(2.0), lo=0.0, lo_open=True) == 2.0
    assert _checks.check_real("x", math.inf, lo=0.0, allow_inf=True) == math.inf
    for bad in (True, "1.0", None, np.ones(2), [1.0]):
        with pytest.raises(TypeError, match="x must be a finite number"):
            _checks.check_real("x", bad)
    with pytest.raises(TypeError, match=r"p must be a number in \[0, 1\], got 'a'"):
        _checks.check_probability("p", "a")
    with pytest.raises(TypeError, match="concrete|finite number"):
        jax.jit(lambda v: _checks.check_real("x", v))(1.0)


def test_integer_checks():
    assert _checks.check_int("k", np.int64(3), lo=2) == 3
    with pytest.raises(ValueError, match=r"^k must be >= 2 \(a variance needs two\), got 1$"):
        _checks.check_int("k", 1, lo=2, note="a variance needs two")
    with pytest.raises(ValueError, match=r"^order must be <= 200, got 201$"):
        _checks.check_int("order", 201, hi=200)
    with pytest.raises(ValueError, match=r"^digit must be in \[0, 9\], got 10$"):
        _checks.check_int("digit", 10, lo=0, hi=9)
    for bad in (True, 2.0, "2"):
        with pytest.raises(TypeError, match="k must be an integer"):
            _checks.check_int("k", bad)
    assert _checks.check_positive_int("n", 0, allow_zero=True) == 0
    with pytest.raises(ValueError, match="n must be >= 1, got 0"):
        _checks.check_positive_int("n", 0)


def test_seeds_are_32_bit_because_larger_ones_alias_silently():
    from nwcorrupt import precision

    with precision.x64(False):  # without x64 a jax key keeps the low 32 bits: seed 2**32 would be seed 0
        assert np.array_equal(jax.random.PRNGKey(2**32), jax.random.PRNGKey(0))
    assert _checks.check_seed("seed", 2**32 - 1) == 2**32 - 1
    for bad in (-1, 2**32):
        with pytest.raises(ValueError, match=r"^seed must be in \[0, 2\*\*32\), got"):
            _checks.check_seed("seed", bad)
    with pytest.raises(TypeError, match=r"seed must be an integer in \[0, 2\*\*32\)"):
        _checks.check_seed("seed", 1.0)


def test_check_same_size_names_both_arguments():
    _checks.check_same_size("x_test", 5, "x_train", 5, "features")
    with pytest.raises(ValueError, match="^x_test has 5 features but x_train has 6; they must match$"):
        _checks.check_same_size("x_test", 5, "x_train", 6, "features")


# --- the import graph of nwcorrupt ---------------------------------------------------------------

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def module_files(root: Path, package: str = "nwcorrupt") -> dict[str, Path]:
    """Dotted module name -> file, for every module under ``root/package`` (a package is its __init__)."""
    out = {}
    for f in sorted((root / package).rglob("*.py")):
        parts = list(f.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def import_graph(root: Path, package: str = "nwcorrupt") -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports, from its source (ast).

    Counted: ``import`` and ``from ... import`` statements anywhere in the module (module level and
    inside functions), relative ones resolved, and string constants that spell a module's full
    name (registries resolved with importlib). ``from pkg import name`` points at the submodule
    ``pkg.name`` when there is one, else at ``pkg`` itself (its ``__init__``, which re-exports
    ``name``); importing a submodule adds no edge to its parent package.
    """
    mods = module_files(root, package)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    base_name = ".".join(base + ([node.module] if node.module else []))
                else:
                    base_name = node.module or ""
                targets = [f"{base_name}.{a.name}" if f"{base_name}.{a.name}" in mods else base_name for a in node.names]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                targets = [node.value]
            for t in targets:
                while t and t not in mods and "." in t and t.split(".")[0] == package:
                    t = t.rsplit(".", 1)[0]  # import a.b.c.func-like names: the deepest module
                if t in mods and t != mod:
                    graph[mod].add(t)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph as [a, b, ..., a], or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(u: str) -> list[str] | None:
        state[u] = 1
        stack.append(u)
        for v in sorted(graph.get(u, ())):
            if state.get(v) == 1:
                return stack[stack.index(v):] + [v]
            if v not in state and (found := visit(v)):
                return found
        stack.pop()
        state[u] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def test_the_cycle_finder_sees_function_level_relative_registry_and_reexport_cycles(tmp_path):
    _write(tmp_path, {
        "nwcorrupt/__init__.py": "",
        "nwcorrupt/a.py": "def f():\n    from nwcorrupt import b\n",
        "nwcorrupt/b.py": "from . import a\n",
        "nwcorrupt/reg/__init__.py": "STUDIES = {'x': 'nwcorrupt.reg.x'}\n",
        "nwcorrupt/reg/x.py": "from nwcorrupt.c import ERR\n",
        "nwcorrupt/c.py": "def load():\n    from nwcorrupt import reg\n",
        "nwcorrupt/pkg/__init__.py": "from nwcorrupt.pkg.impl import thing\n",
        "nwcorrupt/pkg/impl.py": "from nwcorrupt.pkg.common import helper\n",
        "nwcorrupt/pkg/common.py": "import numpy\n",
        "nwcorrupt/user.py": "from nwcorrupt.pkg import thing\n",
    })
    graph = import_graph(tmp_path)
    assert graph["nwcorrupt.a"] == {"nwcorrupt.b"} and graph["nwcorrupt.b"] == {"nwcorrupt.a"}
    assert graph["nwcorrupt.reg"] == {"nwcorrupt.reg.x"} and graph["nwcorrupt.c"] == {"nwcorrupt.reg"}
    assert graph["nwcorrupt.user"] == {"nwcorrupt.pkg"} and graph["nwcorrupt.pkg.impl"] == {"nwcorrupt.pkg.common"}
    assert find_cycle(graph) in (["nwcorrupt.a", "nwcorrupt.b", "nwcorrupt.a"],)
    del graph["nwcorrupt.a"], graph["nwcorrupt.b"]
    assert find_cycle(graph) == ["nwcorrupt.c", "nwcorrupt.reg", "nwcorrupt.reg.x", "nwcorrupt.c"]
    graph["nwcorrupt.reg.x"] = set()
    assert find_cycle(graph) is None  # a package re-exporting from a submodule is not a cycle
    graph["nwcorrupt.pkg.common"] = {"nwcorrupt.pkg"}  # ...but a submodule importing the re-export is
    assert find_cycle(graph) == ["nwcorrupt.pkg", "nwcorrupt.pkg.impl", "nwcorrupt.pkg.common", "nwcorrupt.pkg"]


def test_nwcorrupt_has_no_import_cycle():
    # regression: schema -> studies (registry) -> study modules -> common -> schema
    graph = import_graph(PACKAGE_ROOT)
    assert len(graph) > 20 and graph["nwcorrupt.experiments.runner"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def _public_modules() -> list[str]:
    return [m for m in module_files(PACKAGE_ROOT) if not any(part.startswith("_") for part in m.split("."))]


def _declared_all(path: Path) -> list[str] | None:
    """The literal ``__all__`` of a module file (a list or tuple of strings, possibly starred), or None."""
    for node in ast.parse(path.read_text()).body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets) and node.value is not None:
            if not isinstance(node.value, (ast.List, ast.Tuple)):
                return []
            return [e.value for e in node.value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return None


def _defined_public(path: Path) -> list[str]:
    """Names of the public functions and classes a module file defines at top level (imports excluded)."""
    return [
        n.name for n in ast.parse(path.read_text()).body
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not n.name.startswith("_")
    ]


_ALL_EXEMPT: tuple[str, ...] = ()


def test_every_public_module_defines_all():
    files = module_files(PACKAGE_ROOT)
    missing = [m for m in _public_modules() if m not in _ALL_EXEMPT and _declared_all(files[m]) is None]
    assert missing == []


@pytest.mark.parametrize("module", [m for m in _public_modules() if m not in _ALL_EXEMPT])
def test_all_lists_existing_names_and_every_public_definition(module):
    import importlib.util

    path = module_files(PACKAGE_ROOT)[module]
    mod = importlib.import_module(module)
    names = list(mod.__all__)
    assert len(set(names)) == len(names), f"{module}.__all__ repeats a name"
    is_pkg = path.name == "__init__.py"  # a package's __all__ may name its submodules (star import loads them)
    lacking = [n for n in names if not hasattr(mod, n) and not (is_pkg and importlib.util.find_spec(f"{module}.{n}"))]
    assert lacking == [], f"{module}.__all__ names what the module lacks"
    # a public def/class is API: list it, or give it a leading underscore if it is internal
    assert [n for n in _defined_public(path) if n not in names] == [], f"{module} defines public names not in __all__"


def test_the_all_checks_see_missing_and_unlisted_names(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import os\nfrom typing import Any\n\ndef f(): ...\nclass C: ...\ndef _g(): ...\nX = 1\n")
    assert _declared_all(f) is None and _defined_public(f) == ["f", "C"]
    f.write_text('__all__: list[str] = ["f", *()]\ndef f(): ...\nclass C: ...\n')
    assert _declared_all(f) == ["f"] and [n for n in _defined_public(f) if n not in _declared_all(f)] == ["C"]


def private_uses(root: Path, package: str = "nwcorrupt") -> list[str]:
    """Places where a module uses another nwcorrupt module's private (``_name``) attribute.

    Counts ``from nwcorrupt.x import _name`` and ``alias._name`` where ``alias`` is bound by
    ``import nwcorrupt.x as alias`` / ``from nwcorrupt import x as alias`` (module or function
    level). ``nwcorrupt._checks`` and ``nwcorrupt._io`` are private *modules* shared on purpose;
    their names are public within the package.
    """
    shared = {f"{package}._checks", f"{package}._io"}
    files = module_files(root, package)
    hits = []
    for name, path in files.items():
        tree = ast.parse(path.read_text())
        aliases: dict[str, str] = {}
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if node.level:  # relative import: resolve against this module's package
                    module = ".".join(here[: len(here) - node.level + 1] + ([module] if module else []))
                if not module.startswith(package):
                    continue
                for a in node.names:
                    target = f"{module}.{a.name}"
                    if target in files:
                        aliases[a.asname or a.name] = target
                    elif a.name.startswith("_") and not a.name.startswith("__") and module != name and module not in shared:
                        hits.append(f"{name}: from {module} import {a.name}")
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith(package) and a.asname:
                        aliases[a.asname] = a.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.attr.startswith("_")
                    and not node.attr.startswith("__") and node.value.id in aliases):
                target = aliases[node.value.id]
                if target != name and target not in shared:
                    hits.append(f"{name}: {node.value.id}.{node.attr} ({target})")
    return sorted(set(hits))


def test_no_module_uses_another_modules_private_helpers():
    assert private_uses(PACKAGE_ROOT) == []


def test_the_private_use_finder_sees_both_forms(tmp_path):
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "def _helper():\n    return 1\n",
        "pkg/b.py": "from pkg import a as _a\n\ndef f():\n    return _a._helper()\n",
        "pkg/c.py": "def g():\n    from pkg.a import _helper\n    return _helper()\n",
        "pkg/d.py": "from .a import _helper\n",
        "pkg/e.py": "from pkg import a\n\ndef h():\n    return a._helper\n",
    })
    found = private_uses(tmp_path, "pkg")
    assert any("pkg.b" in h and "_a._helper" in h for h in found)
    assert any("pkg.c" in h and "import _helper" in h for h in found)
    assert any(h.startswith("pkg.d:") for h in found)
    assert any(h.startswith("pkg.e:") for h in found)


#: A module past this many lines is a package waiting to be split (house rule).
MAX_MODULE_LINES = 800


def test_no_module_is_past_the_size_limit():
    long = {name: n for name, path in module_files(PACKAGE_ROOT).items()
            if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}
