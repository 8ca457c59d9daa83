"""A real nginx serving TLS on 127.0.0.1 and stapling an OCSP response read from a file.

Why: a device that cannot reach the OCSP responder (or should not, for privacy) learns its
server's status from the response the server staples into the handshake (RFC 6066 §8). nginx
can staple a response it is given as a file (`ssl_stapling_file`), which is what
`fleetpki ocsp export` writes; only the real server shows that it accepts the file.

nginx reads the file when it loads its configuration: after a new export, `reload()` (SIGHUP
to the master this object started) makes new connections get the new response. The process
lifecycle (private prefix, free port, bounded waits, stopping only its own master) is
support.nginx.NginxServer's.
"""

from __future__ import annotations

from pathlib import Path

from support.nginx import NginxServer, http_preamble

__all__ = ["StaplingNginx"]


class StaplingNginx(NginxServer):
    def __init__(self, *, chain: Path, key: Path, stapling_file: Path, directory: Path,
                 server_name: str = "localhost", timeout: float = 15.0) -> None:
        """`chain` is the leaf followed by its issuing CA: nginx needs the issuer to match the
        response to the certificate, and sends the chain to clients."""
        super().__init__(directory=directory, startup_timeout=timeout)
        self.chain = chain.resolve()
        self.key = key.resolve()
        self.stapling_file = stapling_file.resolve()
        self.server_name = server_name

    def render(self, *, prefix: Path, listen_port: int) -> str:
        return (
            http_preamble(prefix, f"fleetpki test server stapling {self.stapling_file.name}")
            + "    server {\n"
            f"        listen 127.0.0.1:{listen_port} ssl;\n"
            f"        server_name {self.server_name};\n"
            f"        ssl_certificate {self.chain};\n"
            f"        ssl_certificate_key {self.key};\n"
            "        ssl_stapling on;\n"
            f"        ssl_stapling_file {self.stapling_file};\n"
            "        location / { return 200 \"stapled\\n\"; }\n"
            "    }\n"
            "}\n")
