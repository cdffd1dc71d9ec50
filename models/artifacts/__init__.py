"""Model files derived by this project (see models/quantize.py), shipped with the package."""
