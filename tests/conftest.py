from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

# Copier commits uncommitted template changes in its temporary clone (vcs_ref="HEAD");
# a clean machine may have no git identity.
for variable, value in {
    "GIT_AUTHOR_NAME": "template tests",
    "GIT_AUTHOR_EMAIL": "tests@localhost",
    "GIT_COMMITTER_NAME": "template tests",
    "GIT_COMMITTER_EMAIL": "tests@localhost",
}.items():
    os.environ.setdefault(variable, value)
