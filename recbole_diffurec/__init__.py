"""recbole-diffurec: diffusion sequential recommenders (DiffuRec, DiffuRecSys) as RecBole models.

Importing the package applies the compatibility patches (``compat``) and registers our models and
trainer with RecBole's lookups, so RecBole's own tools find them.
"""
from recbole_diffurec import compat

compat.apply()

from recbole_diffurec.utils import UsageError, register  # noqa: E402

register()

__version__ = "0.1.0"
__all__ = ["UsageError", "__version__"]
