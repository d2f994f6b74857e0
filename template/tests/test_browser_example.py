"""The browser example's vendored Socket.IO client (examples/browser/vendor/) is the release
package-lock.json pins, and index.html loads it with its own SRI hash.

Dependabot updates package.json and package-lock.json, not the vendored copy: until it is
copied again from the new release (README.md, "A browser client"), this test fails.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "browser"
VENDORED = EXAMPLE / "vendor" / "socket.io.min.js"


def test_vendored_client_is_the_locked_version_with_the_pages_sri_hash() -> None:
    lock = json.loads((EXAMPLE / "package-lock.json").read_text())
    version = lock["packages"]["node_modules/socket.io-client"]["version"]
    vendored = VENDORED.read_bytes()
    banner = re.search(rb"Socket\.IO v(\S+)\n", vendored[:200])
    assert banner is not None
    assert banner.group(1).decode() == version
    digest = base64.b64encode(hashlib.sha384(vendored).digest()).decode()
    page = (EXAMPLE / "index.html").read_text()
    assert f'src="vendor/socket.io.min.js" integrity="sha384-{digest}"' in page
