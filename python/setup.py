"""The metadata is in pyproject.toml; this only marks the wheel as one platform's (it bundles
libkvcache_c.so) and refuses to build one without the library."""
import glob
import os

from setuptools import setup
from setuptools.dist import Distribution

HERE = os.path.dirname(os.path.abspath(__file__))
if not glob.glob(os.path.join(HERE, "kvcache", "_lib", "libkvcache_c.so.*")):
    raise SystemExit("kvcache/_lib has no libkvcache_c.so: run `bash tools/python/build.sh` in the repository first")


class BinaryDistribution(Distribution):
    def has_ext_modules(self):
        return True


setup(distclass=BinaryDistribution)
