"""Train and evaluate a recommender (ours or any RecBole model) in RecBole's harness, from a clone.

The same command line as the installed ``recbole-diffurec`` (``recbole_diffurec/cli.py``):
``python run_recbole_diffurec.py --help``.
"""
import sys

from recbole_diffurec.cli import main

if __name__ == "__main__":
    sys.exit(main())
