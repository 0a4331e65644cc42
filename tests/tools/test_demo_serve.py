"""`callmark demo --serve`: the demo's real server (gunicorn, several workers) stays up at the end,
the console's address and the admin key are printed, and that key logs in to the console on
whichever worker answers (the session secret is shared through the data dir)."""
from __future__ import annotations

import re
import threading

import pytest
import requests

from tools.demo import Server, free_port, keep_serving


@pytest.mark.slow
def test_demo_serve_leaves_a_working_console(tmp_path, capsys):
    data, exports = tmp_path / "store", tmp_path / "exports"
    data.mkdir()
    exports.mkdir()
    server = Server(data, exports, free_port(), "demo-admin-key-" + "k" * 20, tmp_path / "keys")
    th = threading.Thread(target=keep_serving, args=(server, tmp_path), daemon=True)
    th.start()
    try:
        s = requests.Session()
        for _ in range(6):          # several logins: each may land on another worker
            page = s.get(server.url + "/console/login", timeout=10)
            token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
            r = s.post(server.url + "/console/login", data={"api_key": server.admin_key, "csrf_token": token},
                       timeout=10)
            assert r.status_code == 200 and "Overview" in r.text, r.text[:300]
            for _ in range(4):
                assert s.get(server.url + "/console/health", timeout=10).status_code == 200
            s.cookies.clear()
        assert (tmp_path / "console-key.txt").read_text().strip() == server.admin_key
    finally:
        server.proc.terminate()
        th.join(30)
    assert not th.is_alive() and server.proc.poll() is not None
    out = capsys.readouterr().out
    assert f"{server.url}/console/" in out and server.admin_key in out
