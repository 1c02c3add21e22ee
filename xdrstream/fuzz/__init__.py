"""Fuzzing layer (issue 6): schema-driven generators, mutators, harnesses, live fuzzer.

Modules:

* :mod:`.strategies` -- hypothesis strategies: valid values of any compiled type
  (``strategy_for``, ``register``), valid CALL frames (``frames``) and whole client/server
  sessions over all stream variants (``sessions``, ``replay``). Needs hypothesis.
* :mod:`.values` -- smallest and random valid values without hypothesis.
* :mod:`.mutators` -- structure-aware, deterministic mutations of frames and sessions.
* :mod:`.harnesses` -- the one-input functions behind ``fuzz/*_fuzzer.py`` (atheris).
* :mod:`.corpus` -- seed inputs: canonical sessions, libvirt captures, traces.
* :mod:`.trace` -- findings and seeds as JSON Lines trace files.
* :mod:`.live` -- fuzzing a live server over a socket (``xdrstream fuzz``).
"""
