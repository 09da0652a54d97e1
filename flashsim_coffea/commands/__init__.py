"""Sub-commands of the ``flashsim`` console script (discovered by :mod:`flashsim_coffea.cli`)."""
