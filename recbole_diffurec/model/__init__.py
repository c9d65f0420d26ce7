"""The recommenders of this package; the lookup in ``recbole_diffurec.utils`` lists this module."""
