__version__ = "0.0.1"
# The version is the git tag's (setuptools-scm writes _version.py when the package is built or installed; pyproject.toml)
try:
    from mlops_nb._version import __version__
except ImportError:  # a checkout on the path that was never installed
    __version__ = "0.0.0+unknown"

# A model registered with an earlier release names the classes it holds by the modules of that release
# (`mlops_nb.features.AsCategories`): those names stay importable (notebooks/core/06_moved.ipynb).
__import__("importlib").import_module("mlops_nb.core.moved").install()

# The Python API (`mlops_nb.run(...)`, `mlops_nb.runs()`, `mlops_nb.show(...)`) and `%load_ext mlops_nb`; both
# defined in notebooks/lab/ and loaded only when used, so that `import mlops_nb` stays instant.
_API = ("run", "runs", "show")


# (By importlib, not an import statement: the package itself sits below every layer, and `import mlops_nb` from a
# lower layer must not count as importing the top one.)
def __getattr__(name):
    if name in _API:
        import importlib

        return getattr(importlib.import_module("mlops_nb.lab.api"), name)
    raise AttributeError(f"module 'mlops_nb' has no attribute {name!r}")


def load_ipython_extension(ipython):
    "`%load_ext mlops_nb`: the %mlops magic."
    import importlib

    importlib.import_module("mlops_nb.lab.magics").load_ipython_extension(ipython)
