"""The recommenders of this package; the lookup in ``recbole_diffurec.utils`` lists this module.

The DiffuRecSys paper's ablation rows: baseline = ``DiffuRec``, V1 = ``DiffuRecSysV1``
(cross-attention), V2 = ``DiffuRecSys`` (cross-attention + offset noise).
"""
from recbole_diffurec.model.diffurec import DiffuRec
from recbole_diffurec.model.diffurecsys import DiffuRecSys, DiffuRecSysV1

__all__ = ["DiffuRec", "DiffuRecSys", "DiffuRecSysV1"]
