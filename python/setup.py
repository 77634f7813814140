"""The metadata is in pyproject.toml; this only makes the wheel one platform's but any Python 3's
(it bundles libkvcache_c.so and libkvcache_config.so and loads them with ctypes: py3-none-<platform>), and refuses to build one
without the library."""
import glob
import os

from setuptools import setup
from setuptools.dist import Distribution

try:
    from setuptools.command.bdist_wheel import bdist_wheel  # setuptools >= 70.1
except ImportError:
    from wheel.bdist_wheel import bdist_wheel

HERE = os.path.dirname(os.path.abspath(__file__))
for lib in ("libkvcache_c", "libkvcache_config"):
    if not glob.glob(os.path.join(HERE, "kvcache", "_lib", f"{lib}.so.*")):
        raise SystemExit(f"kvcache/_lib has no {lib}.so: run `bash tools/python/build.sh` in the repository first")


class BinaryDistribution(Distribution):
    def has_ext_modules(self):
        return True


class PlatformWheel(bdist_wheel):
    def get_tag(self):
        return ("py3", "none", super().get_tag()[2])


setup(distclass=BinaryDistribution, cmdclass={"bdist_wheel": PlatformWheel})
