"""tools/check_code.py on a planted package: each rule's violations found at their lines, and the near
misses beside them passed; the baseline lets known violations pass and fails on new ones."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

TOOL = Path(__file__).resolve().parents[2] / "tools" / "check_code.py"


def plant(tmp_path: Path, files: dict[str, str]) -> Path:
    """A package ``planted`` under ``tmp_path/src`` with ``files`` (path in the package -> source);
    every folder gets an empty ``__init__.py`` unless given one."""
    package = tmp_path / "src" / "planted"
    for name, source in {"__init__.py": "", **files}.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
        if not (path.parent / "__init__.py").exists():
            (path.parent / "__init__.py").write_text("")
    return package


def run(package: Path, *args: str) -> tuple[int, list[str], str]:
    result = subprocess.run([sys.executable, str(TOOL), str(package), *args], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, result.stdout.splitlines(), result.stderr


def line_of(package: Path, name: str, marker: str) -> int:
    """The 1-based line of ``name`` that contains ``marker``."""
    lines = (package / name).read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if marker in line)


def function(name: str, lines: int, indent: str = "") -> str:
    """A function of exactly ``lines`` lines from its ``def`` to its last line, docstring included."""
    body = [f'{indent}def {name}():', f'{indent}    """Doc."""'] + [f"{indent}    x = {i}" for i in range(lines - 3)]
    return "\n".join(body + [f"{indent}    return x"]) + "\n"


def test_a_60_line_function_passes_and_61_fails_decorators_not_counted(tmp_path):
    source = (function("sixty", 60) + "\n\n" + function("sixty_one", 61) + "\n\n"
              + "class K:\n    @staticmethod\n    @staticmethod\n" + function("decorated_sixty", 60, "    ")
              + "\n    " + function("method_sixty_one", 61, "    ").lstrip())
    package = plant(tmp_path, {"long.py": source})
    rc, out, _ = run(package)
    assert rc == 1
    assert out == [
        f"src/planted/long.py:{line_of(package, 'long.py', 'def sixty_one')}: long-function: sixty_one "
        "(61 lines, at most 60)",
        f"src/planted/long.py:{line_of(package, 'long.py', 'def method_sixty_one')}: long-function: "
        "K.method_sixty_one (61 lines, at most 60)",
    ]


def test_broad_excepts_are_found_and_a_named_exception_passes(tmp_path):
    package = plant(tmp_path, {"catch.py": """
        import builtins

        def careful():
            try:
                pass
            except ValueError:  # named: fine
                pass
            except (KeyError, OSError):  # named: fine
                pass

        def careless():
            try:
                pass
            except Exception:  # plain
                pass
            except (ValueError, BaseException):  # in a tuple
                pass
            except builtins.Exception:  # dotted
                pass
            except:  # bare
                pass

        try:
            pass
        except Exception:  # at the top
            pass
    """})
    rc, out, _ = run(package)
    at = lambda marker: line_of(package, "catch.py", marker)  # noqa: E731
    assert rc == 1
    assert out == [f"src/planted/catch.py:{at('# plain')}: broad-except: except Exception in careless",
                   f"src/planted/catch.py:{at('# in a tuple')}: broad-except: except BaseException in careless",
                   f"src/planted/catch.py:{at('# dotted')}: broad-except: except Exception in careless",
                   f"src/planted/catch.py:{at('# bare')}: broad-except: bare except in careless",
                   f"src/planted/catch.py:{at('# at the top')}: broad-except: except Exception in <module>"]


def test_private_names_imported_across_parts_are_found_and_within_a_part_pass(tmp_path):
    package = plant(tmp_path, {
        "store/layout.py": "_SECRET = 1\n__version__ = '1'\n",
        "store/_hidden.py": "VALUE = 1\n",
        "store/reader.py": ("from planted.store.layout import _SECRET  # same part\n"
                            "from . import _hidden  # same part\n"),
        "scan/plots.py": """
            from planted.store.layout import _SECRET  # absolute
            from ..store.layout import _SECRET as S  # relative
            from planted.store.layout import __version__  # dunder: fine
            import planted.store._hidden  # private module
            from planted.store._hidden import VALUE  # public name of a private module
        """,
        "series.py": "from planted.store.layout import _SECRET  # top-level module\n",
    })
    rc, out, _ = run(package)
    at = lambda name, marker: line_of(package, name, marker)  # noqa: E731
    assert rc == 1
    assert out == [
        f"src/planted/scan/plots.py:{at('scan/plots.py', '# absolute')}: private-import: "
        "planted.store.layout._SECRET into planted.scan.plots",
        f"src/planted/scan/plots.py:{at('scan/plots.py', '# relative')}: private-import: "
        "planted.store.layout._SECRET into planted.scan.plots",
        f"src/planted/scan/plots.py:{at('scan/plots.py', '# private module')}: private-import: "
        "planted.store._hidden into planted.scan.plots",
        f"src/planted/scan/plots.py:{at('scan/plots.py', '# public name')}: private-import: "
        "planted.store._hidden.VALUE into planted.scan.plots",
        f"src/planted/series.py:1: private-import: planted.store.layout._SECRET into planted.series",
    ]


def test_a_cycle_through_a_function_level_import_is_found(tmp_path):
    package = plant(tmp_path, {
        "series.py": "from planted.toy import world\n",
        "toy/__init__.py": "from planted.toy.pretrain import world\n",
        "toy/pretrain.py": """
            def world():
                from planted.series import open  # lazy: the way back
                return open
        """,
        "alone.py": "import planted.toy.pretrain\n",  # imports into the cycle, is not on it
    })
    rc, out, _ = run(package)
    assert rc == 1
    assert out == [
        "src/planted/series.py:1: import-cycle: planted.series -> planted.toy "
        "(back: planted.toy -> planted.toy.pretrain -> planted.series)",
        "src/planted/toy/__init__.py:1: import-cycle: planted.toy -> planted.toy.pretrain "
        "(back: planted.toy.pretrain -> planted.series -> planted.toy)",
        "src/planted/toy/pretrain.py:3: import-cycle: planted.toy.pretrain -> planted.series "
        "(back: planted.series -> planted.toy -> planted.toy.pretrain)",
    ]


def test_a_cycle_under_type_checking_is_found_and_a_one_way_import_passes(tmp_path):
    package = plant(tmp_path, {
        "a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from planted.b import B\n",
        "b.py": "from planted.a import TYPE_CHECKING\n",
        "c.py": "from planted.a import TYPE_CHECKING\n",
    })
    rc, out, _ = run(package)
    assert rc == 1
    assert [line.split(" (back")[0] for line in out] == [
        "src/planted/a.py:3: import-cycle: planted.a -> planted.b",
        "src/planted/b.py:1: import-cycle: planted.b -> planted.a",
    ]


def test_a_function_level_import_needs_a_lazy_comment_with_a_reason(tmp_path):
    package = plant(tmp_path, {"other.py": "X = 1\n", "lazy.py": """
        def allowed():
            import json  # the standard library: fine
            import numpy  # lazy: start-up time
            # lazy: optional extra wandb
            from planted import other
            from planted.other import (  # lazy: a reason on the statement's first line
                X,
            )
            from planted.other import (
                X,  # lazy: or on a later line of it
            )

        def refused():
            import numpy  # no reason
            from planted import other  # lazy:
            import numpy  # lazy: this line's own reason
            from . import other  # not covered by the comment that ends the line above
            if True:
                import numpy.linalg  # nested in a block of a function

        class K:
            import numpy  # in a class body, not a function: fine
    """})
    rc, out, _ = run(package)
    at = lambda marker: line_of(package, "lazy.py", marker)  # noqa: E731
    why = "(a function-level import needs a `# lazy: reason` comment)"
    assert rc == 1
    assert out == [
        f"src/planted/lazy.py:{at('# no reason')}: function-import: import of numpy in refused {why}",
        f"src/planted/lazy.py:{at('import other  # lazy:')}: function-import: import of planted.other in refused {why}",
        f"src/planted/lazy.py:{at('# not covered')}: function-import: import of planted.other in refused {why}",
        f"src/planted/lazy.py:{at('# nested')}: function-import: import of numpy.linalg in refused {why}",
    ]


def test_the_baseline_passes_known_violations_and_fails_new_ones(tmp_path):
    package = plant(tmp_path, {"catch.py": """
        def one():
            try:
                pass
            except Exception:
                pass
            try:
                pass
            except Exception:
                pass
    """})
    key = "src/planted/catch.py: broad-except: except Exception in one"
    written = tmp_path / "written.txt"
    assert run(package, "--write-baseline", str(written))[0] == 0
    assert written.read_text() == f"{key}\n{key}\n"

    rc, out, err = run(package, "--baseline", str(written))
    assert (rc, out, err) == (0, [], "")

    once = tmp_path / "once.txt"  # a key listed once covers one of the two
    once.write_text(f"{key}\n")
    rc, out, _ = run(package, "--baseline", str(once))
    assert rc == 1 and out == ["src/planted/catch.py:9: broad-except: except Exception in one"]

    stale = tmp_path / "stale.txt"  # a listed violation that is gone: named, not a failure
    stale.write_text(f"{key}\n{key}\nsrc/planted/gone.py: broad-except: bare except in f\n")
    rc, out, err = run(package, "--baseline", str(stale))
    assert (rc, out) == (0, [])
    gone = "src/planted/gone.py: broad-except: bare except in f"
    assert err == f"check_code: no longer occurs, remove it from {stale}: {gone}\n"
