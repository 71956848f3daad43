"""Sphinx configuration of mutomo's documentation (``make docs``: warnings are errors).

Pages are Markdown (MyST). What can be generated from the code is: the configuration reference
from the pydantic schema, the command line from the argparse parser, the Python API from the
docstrings, and the results tables from the JSON in ``benchmarks/results`` (``_ext/mutomo_docs.py``
writes them into ``_generated/`` before reading the pages). The tutorials in ``tutorials_src/``
are scripts that sphinx-gallery runs during the build, so a renamed field or command breaks it.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
os.environ.setdefault("MPLBACKEND", "Agg")
logging.getLogger("pyg4ometry").setLevel(logging.WARNING)  # its GDML reader logs every file at INFO

import mutomo  # noqa: E402

project = "mutomo"
author = "the mutomo developers"
copyright = "2026, the mutomo developers"  # noqa: A001
version = release = mutomo.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinxarg.ext",
    "sphinx_gallery.gen_gallery",
    "mutomo_docs",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "_generated", "tutorials_src", "**/sg_execution_times.rst", "Thumbs.db", ".DS_Store"]
myst_enable_extensions = ["colon_fence", "dollarmath", "deflist"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

sphinx_gallery_conf = {
    "examples_dirs": ["tutorials_src"],
    "gallery_dirs": ["tutorials"],
    "filename_pattern": r"/tutorial_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "abort_on_example_error": True,
    "show_memory": False,
    "image_scrapers": ("matplotlib",),
    "within_subsection_order": "FileNameSortKey",
}

html_theme = "furo"
html_title = f"mutomo {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_theme_options = {"navigation_with_keys": True}
