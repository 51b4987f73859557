"""Issue 10 items 12 (logging) and 9 (tracebacks): what reaches the log.

httpx logged every gateway request with its full URL (credentials included) at INFO, and only a
few named loggers had a redaction filter, which records of other loggers never passed. Now the
filters sit on the handlers `atende serve` writes through; the same error's traceback is
printed at most once per window.
"""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import textwrap

from atende.logs import TracebackRateLimit, install_redaction, secure

# Run in a fresh interpreter: `atende serve`'s logging setup, a third-party logger, real httpx.
SERVE_LOGGING = textwrap.dedent(
    """
    import logging, logging.config, threading
    from http.server import BaseHTTPRequestHandler, HTTPServer
    import httpx
    from atende.logs import log_config

    logging.config.dictConfig(log_config())

    class Ok(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
        def log_message(self, *args):
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://gwuser:pa55word@127.0.0.1:{httpd.server_port}/send?apikey=abc123secret"
    httpx.get(url).raise_for_status()
    other = logging.getLogger("some.library")
    other.warning("calling %s", url)
    other.warning("headers %s", {"apikey": "abc123secret", "Authorization": "Bearer eyJ.abc.def"})
    try:
        raise RuntimeError(f"gateway failed: {url}")
    except RuntimeError:
        other.exception("send failed")
    logging.getLogger("uvicorn.error").info("GET /ws/chat?token=eyJ.tok.en")
    print("done")
    """
)


def test_serve_logging_masks_secrets_and_keeps_httpx_quiet() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SERVE_LOGGING], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    log = done.stderr
    assert "calling http://***@127.0.0.1:" in log
    assert "apikey=***" in log
    assert "gateway failed: http://***@" in log  # inside the traceback too
    assert "token=***" in log
    for secret in ("gwuser", "pa55word", "abc123secret", "eyJ.abc.def", "eyJ.tok.en"):
        assert secret not in log, log
    assert "HTTP Request" not in log  # httpx's own INFO line with the full URL


def test_apps_run_by_other_logging_setups_get_the_filters_too() -> None:
    handler = logging.StreamHandler(io.StringIO())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        install_redaction()
        assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
        assert not logging.getLogger("httpcore").isEnabledFor(logging.INFO)
        logging.getLogger("any.thirdparty").error("GET https://u:p4ss@h.test/?token=tok3n")
    finally:
        root.removeHandler(handler)
    written = handler.stream.getvalue()  # type: ignore[attr-defined]
    assert "https://***@h.test/?token=***" in written
    assert "p4ss" not in written and "tok3n" not in written


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _fail(logger: logging.Logger, detail: str) -> None:
    try:
        raise ValueError(f"bad thing {detail}")
    except ValueError:
        logger.exception("webhook failed")


def test_one_traceback_per_error_per_window() -> None:
    clock = FakeClock()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(TracebackRateLimit(window_secs=60, clock=clock))
    secure(handler)  # (adds the redaction filter; the rate limit is already there)
    logger = logging.getLogger("atende.test.tracebacks")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        for n in range(5):
            clock.now += 1
            _fail(logger, str(n))  # the same raise site, varying exception text
        clock.now += 60
        _fail(logger, "after the window")
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert stream.getvalue().count("Traceback (most recent call last)") == 2
    repeats = [line for line in lines if "repeat" in line]
    assert len(repeats) == 4
    assert repeats[-1] == (
        "webhook failed [ValueError; repeat 4 in 4 s, traceback shown at most once per 60 s]"
    )
    assert sum(1 for f in handler.filters if isinstance(f, TracebackRateLimit)) == 1
