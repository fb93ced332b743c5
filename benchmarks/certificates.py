"""A throw-away certificate authority and a certificate for ``localhost``, as PEM files."""

from __future__ import annotations

import os
from types import TracebackType


class Certificates:
    """Writes ``ca.pem`` and ``localhost.pem`` (key and chain) into ``directory``."""

    def __init__(self, directory: str) -> None:
        self.ca_file = os.path.join(directory, "ca.pem")
        self.cert_file = os.path.join(directory, "localhost.pem")
        self.key_file = self.cert_file

    def __enter__(self) -> Certificates:
        import trustme

        authority = trustme.CA()
        authority.cert_pem.write_to_path(self.ca_file)
        authority.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(
            self.cert_file
        )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for path in (self.ca_file, self.cert_file):
            if os.path.exists(path):
                os.remove(path)
