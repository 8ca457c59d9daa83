"""The HTTPS runtime: TLS contexts for mutual TLS, uvicorn protocols that hand the client
certificate to ASGI apps, and a pre-fork supervisor that runs the apps in worker processes.

No ASGI server exposes the TLS client certificate, and devices authenticate with one, so this
package adds the smallest layer on top of a pinned uvicorn that does (see client_certs.py for
the contract apps rely on, workers.py for the process model, tls.py for what the handshake
checks and, as importantly, what it leaves to the application).
"""
