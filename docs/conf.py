"""Sphinx configuration of the captum-regadv documentation.

Build (what ``bash scripts/docs.sh`` runs)::

    sphinx-build -W --keep-going -b html docs docs/_build/html

Everything renders offline: MathJax 3 is copied into ``_static/mathjax`` from
the ``sphinx-mathjax-offline`` package, no intersphinx, no CDN.

Before reading, :func:`_generate` copies into ``docs/_generated/`` (not
tracked by git):

* the tutorials ``tutorials/*.py`` (jupytext percent format), which myst-nb
  executes on every build (``nb_execution_mode = "force"``, and they are
  always re-read, see :func:`_always_reexecute`), so every figure comes from
  the current code;
* ``results/benchmark/table.md`` (and its figures) when a benchmark run has
  written them, else a note saying how to produce them.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from sphinx.util import logging

import captum_regadv
import captum_regadv.benchmark

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
GENERATED = DOCS / "_generated"
TUTORIALS = ROOT / "tutorials"
BENCHMARK = ROOT / "results" / "benchmark"

logger = logging.getLogger(__name__)

# -- project -----------------------------------------------------------------

project = "captum-regadv"
author = "captum-regadv contributors"
copyright = "captum-regadv contributors"
release = captum_regadv.__version__
version = ".".join(release.split(".")[:2])

# -- extensions --------------------------------------------------------------

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    # MathJax 3.2.2 bundled in a PyPI package: copied to _static/mathjax.
    "sphinx-mathjax-offline",
    "myst_nb",
]

# conf.py would otherwise be read as a jupytext notebook (see nb_custom_formats);
# the benchmark results are pulled into benchmark.md by an include directive.
exclude_patterns = [
    "_build",
    "conf.py",
    "_generated/benchmark_results.md",
    "Thumbs.db",
    ".DS_Store",
    "**/.ipynb_checkpoints",
]
templates_path: list[str] = []
root_doc = "index"

# -- maths, offline ----------------------------------------------------------

mathjax_path = "mathjax/tex-chtml.js"  # relative: served from _static/

# -- autodoc / napoleon --------------------------------------------------------

autodoc_default_options = {"member-order": "bysource"}
# The Args blocks state the accepted types in words; the expanded unions of the
# type aliases would make every signature a paragraph.
autodoc_typehints = "none"
autodoc_class_signature = "mixed"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_attr_annotations = True
# RegularizedAdversarial.attribute groups its keyword options in these sections.
napoleon_custom_sections = [
    ("Core options", "params_style"),
    ("Schedule options", "params_style"),
    ("Refinement options", "params_style"),
    ("Weight handling options", "params_style"),
    ("Output options", "params_style"),
]

# -- MyST and notebooks ----------------------------------------------------------

myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "substitution"]


def _defaults(function: Any) -> dict[str, str]:
    """``{{ default_<name> }}`` substitutions: a keyword default, as inline code."""
    parameters = inspect.signature(function).parameters.values()
    return {
        f"default_{p.name}": f"`{p.default!r}`"
        for p in parameters
        if p.default is not inspect.Parameter.empty
    }


# The pages quote the defaults of the code being documented, never a copy.
myst_substitutions = _defaults(captum_regadv.RegularizedAdversarial.attribute)
myst_heading_anchors = 3

nb_custom_formats = {".py": ["jupytext.reads", {"fmt": "py:percent"}]}
nb_execution_mode = "force"
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_execution_timeout = 180  # seconds per cell
nb_merge_streams = True
nb_render_markdown_format = "myst"  # markdown outputs may hold tables
nb_ipywidgets_js: dict[str, dict[str, str]] = {}  # no CDN scripts, ever

# -- HTML ------------------------------------------------------------------------

html_theme = "alabaster"
html_title = f"captum-regadv {release}"
html_theme_options = {
    "description": "Regularized adversarial examples for model interpretability, "
    "a Captum extension",
    "page_width": "1100px",
    "sidebar_width": "230px",
    "fixed_sidebar": True,
}
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_show_sourcelink = False


# -- generated sources -------------------------------------------------------------

BENCHMARK_MISSING = """\
```{note}
No benchmark results were found when these pages were built. Run

    bash scripts/main.sh

(it writes `results/benchmark/table.md`, `figure1.png` and `figure2.png`),
then build the documentation again.
```
"""


def _write_if_changed(path: Path, data: bytes) -> None:
    """Write ``data`` unless the file already holds it (keeps mtimes, so Sphinx
    only re-reads what changed)."""
    if path.exists() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _generate() -> None:
    tutorial_dir = GENERATED / "tutorials"
    sources = sorted(TUTORIALS.glob("[0-9][0-9]_*.py"))
    wanted = {p.name for p in sources}
    if tutorial_dir.exists():
        for stale in tutorial_dir.glob("*.py"):
            if stale.name not in wanted:
                stale.unlink()
    for source in sources:
        _write_if_changed(tutorial_dir / source.name, source.read_bytes())

    table = BENCHMARK / "table.md"
    if table.is_file():
        parts = [table.read_text(encoding="utf-8").rstrip() + "\n"]
        for name, caption in (
            ("figure1.png", "Figure 1 of the run: ground truth (green) and the masks (red) "
             "or continuous maps of each method."),
            ("figure2.png", "Figure 2 of the run: a zoom on the lesion, each method's "
             "perturbed input J and its difference J - I."),
        ):
            figure = BENCHMARK / name
            if figure.is_file():
                _write_if_changed(GENERATED / f"benchmark_{name}", figure.read_bytes())
                parts.append(
                    f"\n```{{figure}} /_generated/benchmark_{name}\n:alt: {caption}\n\n{caption}\n```\n"
                )
        text = "\n".join(parts)
    else:
        for name in ("figure1.png", "figure2.png"):
            (GENERATED / f"benchmark_{name}").unlink(missing_ok=True)
        text = BENCHMARK_MISSING
    _write_if_changed(GENERATED / "benchmark_results.md", text.encode("utf-8"))


_generate()


# -- hooks -------------------------------------------------------------------------


def _always_reexecute(app: Any, env: Any, added: Any, changed: Any, removed: Any) -> list[str]:
    """Re-read (so re-execute) every tutorial on every build: they depend on the
    library code, which Sphinx does not track as their dependency."""
    return sorted(d for d in env.found_docs if d.startswith("_generated/tutorials/"))


def _check_api_coverage(app: Any, env: Any) -> None:
    """Warn (an error under ``-W``) for any public name the API page misses."""
    objects = env.get_domain("py").objects
    for module in (captum_regadv, captum_regadv.benchmark):
        for name in module.__all__:
            qualified = f"{module.__name__}.{name}"
            if qualified not in objects:
                logger.warning("API reference: %s is public but not documented", qualified)


def setup(app: Any) -> None:
    app.connect("env-get-outdated", _always_reexecute)
    app.connect("env-check-consistency", _check_api_coverage)
