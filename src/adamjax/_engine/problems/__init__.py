"""Problems: the abstract classes and user problems (``base``), one module per
built-in problem, and the registry that maps ``problem.kind`` to them."""
