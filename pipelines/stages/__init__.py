"""Pipeline stages, in the order a row passes through them (see ``unieditkit.pipelines.build``)."""
