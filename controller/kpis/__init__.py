"""Field KPIs for operators: pure figures (:mod:`.figures`) and the controller job writing them (:mod:`.job`)."""
