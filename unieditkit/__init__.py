"""unieditkit: data and training toolkit for reference-guided image editing.

The installed package has floors, and a module imports only from its own floor or below (``tests/
test_import_layers.py`` reads ``FLOORS`` and parses every import, function-level ones included):

* **core**: the modules directly in ``unieditkit/`` (format, reader, storage, integrity, imageio, mats, perlin,
  errors, ...): what a built folder is and how to read it, needed by every floor above;
* **taxonomy**: the categories a sample is filed under;
* **pipelines**: the build, which writes the format;
* **training**: the editor, which reads what the build wrote;
* **tools**: ``inspect`` and ``evaluate``, which look at a build or an editor's outputs with whatever the floors
  below offer (``evaluate`` embeds with the pipelines' models, ``validate`` checks against the taxonomy), and the
  ``cli`` that dispatches to every floor. They keep their place and import names (``unieditkit.inspect``,
  ``unieditkit.evaluate``, which the benchmarks and users' scripts call) rather than move under a ``tools/``
  folder: this table, checked by the test, is the one place that says they sit on top.
"""

__version__ = "0.1.0"

#: the repository's top-level folders installed as ``unieditkit.<name>`` (``setup.py`` maps them)
ROOMS = ("pipelines", "taxonomy", "training")

#: lowest first; a module belongs to the floor of the longest prefix that names it
FLOORS = (
    ("core", ("unieditkit",)),
    ("taxonomy", ("unieditkit.taxonomy",)),
    ("pipelines", ("unieditkit.pipelines",)),
    ("training", ("unieditkit.training",)),
    ("tools", ("unieditkit.inspect", "unieditkit.evaluate", "unieditkit.cli")),
)
