"""An HTTPS git server for tests: `git http-backend` behind a TLS test server on 127.0.0.1, its
certificate trusted through the platform's own git config (git's HOME is the workspace root). Cloning is
anonymous; pushing needs the token, as on a forge."""

from __future__ import annotations

import base64
import os
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class GitServer:
    """What the server saw; repositories live under `root` (`root/owner/name.git`)."""

    def __init__(self, root: Path, username: str, token: str) -> None:
        self.root = root
        self.username = username
        self.token = token
        self.authorizations: list[tuple[str, str]] = []  # (path, Authorization header)
        self.url = ""
        self.cert = Path()

    def repository_url(self, path: str) -> str:
        return f"{self.url}/{path}.git"

    def trust(self, git_home: Path) -> None:
        """Make git run with HOME=`git_home` trust this server's certificate."""
        git_home.mkdir(parents=True, exist_ok=True)
        (git_home / ".gitconfig").write_text(f"[http]\n\tsslCAInfo = {self.cert}\n")


def _handler(server: GitServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _serve(self) -> None:
            path, _, query = self.path.partition("?")
            authorization = self.headers.get("Authorization", "")
            server.authorizations.append((self.path, authorization))
            pushing = "git-receive-pack" in self.path
            basic = base64.b64encode(f"{server.username}:{server.token}".encode()).decode()
            if pushing and authorization != f"Basic {basic}":
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="forge"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
            env = {
                "PATH": os.environ["PATH"],
                "GIT_PROJECT_ROOT": str(server.root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "REQUEST_METHOD": self.command,
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
                "REMOTE_USER": "pusher" if pushing else "",
                "REMOTE_ADDR": "127.0.0.1",
            }
            out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True).stdout
            head, _, payload = out.partition(b"\r\n\r\n")
            headers = [line.split(":", 1) for line in head.decode().split("\r\n") if ":" in line]
            status = next((int(v.split()[0]) for k, v in headers if k.lower() == "status"), 200)
            self.send_response(status)
            for key, value in headers:
                if key.lower() != "status":
                    self.send_header(key, value.strip())
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _serve

    return Handler


def _certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@contextmanager
def git_https_server(root: Path, *, username: str, token: str) -> Iterator[GitServer]:
    """Serve the bare repositories under `root` over HTTPS until the block ends."""
    root.mkdir(parents=True, exist_ok=True)
    record = GitServer(root, username, token)
    record.cert, key = _certificate(root.parent)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(record))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(record.cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    record.url = f"https://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield record
    finally:
        server.shutdown()
        server.server_close()
