"""The recommenders of this package; the lookup in ``recbole_diffurec.utils`` lists this module."""
from recbole_diffurec.model.diffurec import DiffuRec

__all__ = ["DiffuRec"]
