"""Developer tools, not the simulation library: the OpenAI-compatible stub server
(``stub``), the benchmark harness (``bench``) and JSON-schema sampling used by the
stub and the test doubles (``schema_sampling``). Nothing in the library imports them.

Their old paths (``therasim.stub``, ``therasim.bench``, ``therasim.schema_sampling``)
still import the same modules."""
