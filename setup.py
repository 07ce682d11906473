# All metadata lives in setup.cfg; this file lets `pip install -e .` work with --no-build-isolation.
from setuptools import setup

setup()
