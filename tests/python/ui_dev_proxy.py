"""Development server for the management UI without rebuilding Warren.

Serves crates/warren-http/ui/ at / (as Warren will once the files are embedded) and
forwards every /api/... request, byte for byte, to a running Warren's management API.

    .venv/bin/python tests/python/ui_dev_proxy.py --port 8099 --upstream http://127.0.0.1:15695
"""

import argparse
import http.client
import http.server
import os
import urllib.parse

UI_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "crates", "warren-http", "ui"))
# Hop-by-hop headers (RFC 9110 7.6.1) belong to one connection, never relayed.
# The UI must work under a strict policy (no inline script or style), so the dev server sends one.
CSP = "default-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'"
HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
       "transfer-encoding", "upgrade", "host", "content-length"}
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png",
         ".json": "application/json", ".txt": "text/plain; charset=utf-8", ".md": "text/plain; charset=utf-8"}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream = None  # (host, port)

    def log_message(self, fmt, *args):
        if os.environ.get("UI_PROXY_VERBOSE"):
            super().log_message(fmt, *args)

    def _proxy(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        conn = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            # self.path is sent exactly as the browser wrote it, so %2F stays %2F.
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except OSError as e:
            msg = f"ui_dev_proxy: upstream unreachable: {e}".encode()
            self.send_response(502)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(len(msg)))
            self.end_headers()
            self.wfile.write(msg)
            return
        finally:
            conn.close()
        self.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            # send_response already wrote Server and Date.
            if k.lower() not in HOP and k.lower() not in ("date", "server"):
                self.send_header(k, v)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _static(self):
        path = urllib.parse.urlsplit(self.path).path
        if path == "/":
            path = "/index.html"
        full = os.path.realpath(os.path.join(UI_DIR, urllib.parse.unquote(path).lstrip("/")))
        if not full.startswith(UI_DIR + os.sep) or not os.path.isfile(full):
            self.send_error(404)
            return
        with open(full, "rb") as f:
            data = f.read()
        self.send_response(200)
        self.send_header("content-type", TYPES.get(os.path.splitext(full)[1], "application/octet-stream"))
        self.send_header("content-length", str(len(data)))
        self.send_header("cache-control", "no-cache")
        self.send_header("content-security-policy", CSP)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _dispatch(self):
        if self.path.startswith("/api/") or self.path == "/api":
            self._proxy()
        elif self.command in ("GET", "HEAD"):
            self._static()
        else:
            self.send_error(405)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _dispatch


def serve(port=0, upstream="http://127.0.0.1:15695", host="127.0.0.1"):
    """Returns a ThreadingHTTPServer (not yet serving); its port is server.server_address[1]."""
    u = urllib.parse.urlsplit(upstream)
    handler = type("BoundHandler", (Handler,), {"upstream": (u.hostname, u.port or 80)})
    return http.server.ThreadingHTTPServer((host, port), handler)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=8099)
    p.add_argument("--upstream", default="http://127.0.0.1:15695")
    a = p.parse_args()
    server = serve(a.port, a.upstream)
    print(f"ui_dev_proxy: http://127.0.0.1:{server.server_address[1]}/ -> {a.upstream}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
