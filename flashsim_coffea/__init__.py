"""flashsim-coffea: FlashSim (conditional normalizing flows) for NanoAOD Jets and Muons in coffea."""

__version__ = "0.1.0"
