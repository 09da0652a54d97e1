"""NanoAOD facts shared by every layer: conventions (event identity, masses, angles), reduced
float precision, and ROOT file I/O.

* :mod:`.conventions` — ``EVENT_ID``, ``MUON_MASS``, ``AREA_QUANTUM``, ``wrap_phi``/``delta_phi``/``delta_r``
* :mod:`.precision` — NanoAOD mantissa bits per branch and the rounding that applies them
* :mod:`.io` — reading and writing NanoAOD-format ROOT files with uproot

This package imports nothing from the rest of :mod:`flashsim_coffea` but :mod:`flashsim_coffea.errors`.
"""
