"""Looking at a build folder: ``preview`` (contact sheet), ``gallery`` (static HTML), ``stats`` (tables and
plots) and ``validate`` (every shard against the format). Their commands are in :mod:`unieditkit.inspect.cli`;
``unieditkit eval`` (an editor's outputs) lives in :mod:`unieditkit.evaluate`.

A tool, on the top floor (``unieditkit.FLOORS``): ``validate`` checks labels against the taxonomy, so nothing
below may import this room. What reads a built folder for everyone (done shards' markers, tar members, index
rows) is :mod:`unieditkit.reader` in the core.
"""
