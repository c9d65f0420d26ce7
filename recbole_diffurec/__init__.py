"""recbole-diffurec: diffusion sequential recommenders (DiffuRec, DiffuRecSys) as RecBole models.

Importing the package calls ``compat.install()`` once: the numpy/torch compatibility of RecBole
1.2.1, two fixes of its metrics, and the lookups through which RecBole's own tools find our models,
trainer and training loader (``compat.py`` lists every change).
"""
from recbole_diffurec import compat as _compat

_compat.install()

from recbole_diffurec.errors import UsageError  # noqa: E402

__version__ = "0.1.0"
__all__ = ["UsageError", "__version__"]
