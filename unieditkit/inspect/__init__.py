"""Looking at a build folder: ``preview`` (contact sheet), ``gallery`` (static HTML), ``stats`` (tables and
plots) and ``validate`` (every shard against the format). Their commands are in :mod:`unieditkit.inspect.cli`;
``unieditkit eval`` (an editor's outputs) lives in :mod:`unieditkit.evaluate`.
"""
