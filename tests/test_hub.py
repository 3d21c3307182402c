"""A class on one JupyterHub (hub/jupyterhub_config.py), and the nbgitpuller links for bigger hubs.

The hub test runs JupyterHub (PyPI) and configurable-http-proxy (npm, ``make hub``) on 127.0.0.1 only, with
the class config plus a small overlay: JupyterHub's dummy authenticator, its simple local-process spawner
and a service token for the test. Two learners log in through the REST API, start their servers and run
lesson 00's preflight in a kernel each; both must pass while reading one shared copy of the assets, which
must be unchanged afterwards, and each learner's caches must land in their own folder (the preflight only
creates that folder and tries a write in it, so the kernel then saves one cache file through the lessons'
``cached_json``). Everything is
stopped at the end and every process the test saw (servers, kernels, proxy) is checked gone, by its id.

As root (containers, CI) the shared copy's read-only mode does not stop a write: the fingerprint does.
"""

import asyncio
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from email.message import Message
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psutil
import pytest
from conftest import REPO

from course_utils.authoring import hub
from course_utils.assets import ASSETS
from course_utils.lessons import BRANCH, LESSONS, REPO_SLUG

HUB = REPO / "hub"
LEARNERS = ("ada", "grace")
READY = "All good: the course is ready to run."


# ---- nbgitpuller links -------------------------------------------------------------------------------------

def test_pull_links_open_each_student_copy():
    links = hub.pull_links("https://hub.example.org/")
    assert list(links) == [lesson.slug for lesson in LESSONS]
    for slug, link in links.items():
        parts = urlsplit(link)
        assert (parts.scheme, parts.netloc, parts.path) == ("https", "hub.example.org", "/hub/user-redirect/git-pull")
        assert parse_qs(parts.query) == {"repo": [f"https://github.com/{REPO_SLUG}"], "branch": [BRANCH],
                                         "urlpath": [f"lab/tree/{REPO_SLUG.split('/')[1]}/student/{slug}.ipynb"]}
        assert "/" not in parts.query and ":" not in parts.query  # every value URL-encoded, as nbgitpuller's generator does
        # nbgitpuller clones into the repository's name (its handlers.py: repo.rstrip('/').split('/')[-1]): the
        # folder urlpath opens
        assert hub.REPO_DIR == f"https://github.com/{REPO_SLUG}".rstrip("/").split("/")[-1]
        assert (REPO / "student" / f"{slug}.ipynb").is_file()


def test_pull_links_keep_a_hub_under_a_path_and_refuse_a_bare_name():
    link = hub.pull_link("http://uni.example.org/jupyter", "00_start_here")
    assert link.startswith("http://uni.example.org/jupyter/hub/user-redirect/git-pull?repo=https%3A%2F%2Fgithub.com%2F")
    with pytest.raises(ValueError, match="https://"):
        hub.pull_link("hub.example.org", "00_start_here")


def test_copy_course_once_and_never_over_a_learners_work(tmp_path):
    home = tmp_path / "ada"
    assert hub.copy_course(home)
    assert all((home / "transfer-course" / f"{lesson.slug}.ipynb").is_file() for lesson in LESSONS)
    assert (home / "course-data" / "README.md").is_file()
    (home / "transfer-course" / "00_start_here.ipynb").write_text("ada's work")
    assert not hub.copy_course(home)
    assert (home / "transfer-course" / "00_start_here.ipynb").read_text() == "ada's work"


def test_z2jh_files_agree_on_the_shared_assets_and_the_learners_folders():
    import yaml

    single = yaml.safe_load((HUB / "z2jh-config.yaml").read_text())["singleuser"]
    env = single["extraEnv"]
    mounts = {m["mountPath"]: m for m in single["storage"]["extraVolumeMounts"]}
    assert mounts[env["COURSE_ASSETS_DIR"]]["readOnly"] is True
    assert env["COURSE_DATA_DIR"] == f"/home/jovyan/{hub.DATA_FOLDER}"  # the learner's own volume
    assert single["memory"] == {"guarantee": "1.5G", "limit": "2G"}
    claim, job = yaml.safe_load_all((HUB / "z2jh-assets.yaml").read_text())
    assert job["spec"]["template"]["spec"]["containers"][0]["command"][-2:] == ["--to", env["COURSE_ASSETS_DIR"]]
    assert claim["metadata"]["name"] == single["storage"]["extraVolumes"][0]["persistentVolumeClaim"]["claimName"]


# ---- the hub on loopback -----------------------------------------------------------------------------------

def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proxy_found() -> bool:
    """True when configurable-http-proxy is on PATH or in hub/node_modules (where `make hub` puts it)."""
    return bool(shutil.which("configurable-http-proxy")) or (HUB / "node_modules" / ".bin" / "configurable-http-proxy").exists()


def fingerprint(folder: Path) -> dict[str, tuple]:
    """Every entry under ``folder``: mode, size, mtime and, for files, sha256."""
    prints = {}
    for path in sorted([folder, *folder.rglob("*")]):
        st = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        prints[path.relative_to(folder).as_posix()] = (stat.filemode(st.st_mode), st.st_size, st.st_mtime_ns, digest)
    return prints


def make_read_only(folder: Path) -> None:
    """chmod a-w on every file and folder under ``folder``."""
    for path in [*folder.rglob("*"), folder]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def call(port: int, method: str, path: str, token: str = "", body: object = None) -> tuple[int, object, Message]:
    """One HTTP request to 127.0.0.1:``port`` (redirects not followed): status, JSON or text, headers (any case)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"token {token}"} if token else {}
    data = None
    if body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    try:
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    is_json = resp.getheader("Content-Type", "").startswith("application/json") and raw
    return resp.status, json.loads(raw) if is_json else raw.decode(errors="replace"), resp.headers


def preflight_code() -> str:
    """The source of lesson 00's preflight cell (the one that runs ``problems = check()``)."""
    nb = json.loads((REPO / "notebooks" / "00_start_here.ipynb").read_text())
    cells = ["".join(cell["source"]) for cell in nb["cells"] if cell["cell_type"] == "code"]
    return next(source for source in cells if "problems = check()" in source)


# After the preflight: where this kernel's caches go, and one cache written through the lessons' own helper.
REPORT_CODE = """
import json, os
from course_utils.assets import data_dir
from course_utils.data import cached_json
cached_json("hub-test", "learner", "0", lambda: {"user": os.environ["JUPYTERHUB_USER"]})
print(json.dumps({"pid": os.getpid(), "data_dir": str(data_dir()), "assets": os.environ["COURSE_ASSETS_DIR"],
                  "threads": os.environ.get("OMP_NUM_THREADS")}))
"""


async def execute(port: int, name: str, token: str, kernel_id: str, code: str, timeout: float = 120) -> tuple[str, list]:
    """Run ``code`` in a kernel through the server's websocket API: its stdout and stderr, and any errors."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    url = f"ws://127.0.0.1:{port}/user/{name}/api/kernels/{kernel_id}/channels?session_id={uuid.uuid4().hex}"
    ws = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {token}"}, request_timeout=30))
    msg_id = uuid.uuid4().hex
    ws.write_message(json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": name, "session": uuid.uuid4().hex,
                   "version": "5.3", "date": ""},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True}}))
    out, errors, idle, replied = [], [], False, False
    deadline = time.monotonic() + timeout
    try:
        while not (idle and replied):
            raw = await asyncio.wait_for(ws.read_message(), max(deadline - time.monotonic(), 0.1))
            assert raw is not None, f"{name}'s kernel websocket closed before the cell finished"
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                out.append(content["text"])
            elif kind == "error":
                errors.append(f"{content['ename']}: {content['evalue']}")
            elif kind == "status" and content["execution_state"] == "idle":
                idle = True
            elif kind == "execute_reply":
                replied = True
    finally:
        ws.close()
    return "".join(out), errors


def wait_for(what: str, check, timeout: float, hub_proc: subprocess.Popen | None = None, log: Path | None = None):
    """Poll ``check()`` until it returns something truthy; fail after ``timeout`` s or when the hub died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if hub_proc is not None and hub_proc.poll() is not None:
            pytest.fail(f"JupyterHub exited ({hub_proc.returncode}) while waiting for {what}:\n{log.read_text()[-3000:]}")
        result = check()
        if result:
            return result
        time.sleep(0.25)
    pytest.fail(f"Timed out after {timeout:.0f} s waiting for {what}" + (f":\n{log.read_text()[-3000:]}" if log else ""))


def alive(pid: int) -> bool:
    """True while process ``pid`` runs (a zombie waiting to be reaped has ended)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def loopback_only(pids: list[int]) -> list[str]:
    """The sockets of these processes that listen or connect beyond 127.0.0.1 right now (a snapshot)."""
    wide = []
    for pid in pids:
        for conn in psutil.Process(pid).net_connections(kind="inet"):
            for addr in (conn.laddr, conn.raddr):
                if addr and addr.ip not in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
                    wide.append(f"pid {pid}: {conn}")
    return wide


OVERLAY = """# Test overlay: the class config, then loopback ports, test-only spawner homes and a service token.
load_subconfig({config!r})
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.Spawner.ip = "127.0.0.1"
c.SimpleLocalProcessSpawner.home_dir_template = {homes!r} + "/{{username}}"
c.JupyterHub.services = [{{"name": "course-test", "api_token": {token!r}}}]
c.JupyterHub.load_roles = [{{"name": "course-test", "services": ["course-test"],
                            "scopes": ["admin:users", "admin:servers", "admin:server_state", "list:users"]}}]
"""


@pytest.fixture
def class_hub(tmp_path):
    """JupyterHub with the class config on 127.0.0.1, a shared read-only asset copy; all ended afterwards."""
    if not proxy_found():
        pytest.fail("configurable-http-proxy is missing: run `make hub` (npm install --prefix hub).")
    shared = tmp_path / "shared-assets"
    start = time.monotonic()
    fetched = subprocess.run([sys.executable, "-m", "course_utils", "fetch", "--to", str(shared)],
                             capture_output=True, text=True, timeout=300)
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    print(f"fetch: {time.monotonic() - start:.1f} s, {sum(p.stat().st_size for p in shared.rglob('*') if p.is_file()) / 1e6:.1f} MB")
    make_read_only(shared)
    (tmp_path / "class-list.txt").write_text("# the class\n" + "\n".join(LEARNERS) + "\n")
    port, token = free_port(), uuid.uuid4().hex
    overlay = tmp_path / "test_config.py"
    overlay.write_text(OVERLAY.format(config=str(HUB / "jupyterhub_config.py"), port=port, hub_port=free_port(),
                                      proxy_api_port=free_port(), homes=str(tmp_path / "home"), token=token))
    env = {**os.environ, "COURSE_HUB_AUTHENTICATOR": "dummy", "COURSE_HUB_SPAWNER": "simple",
           "COURSE_ASSETS_DIR": str(shared), "COURSE_HUB_CLASS_LIST": str(tmp_path / "class-list.txt"),
           "COURSE_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    log = tmp_path / "jupyterhub.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", str(overlay)], cwd=tmp_path, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    seen: dict[str, int] = {}  # every process the test learns of, by what it is
    state = {"proc": proc, "port": port, "token": token, "log": log, "shared": shared, "tmp": tmp_path, "pids": seen}
    try:
        wait_for("the hub's API", lambda: _status(port, "/hub/api/") == 200, 60, proc, log)
        yield state
    finally:
        try:  # servers and kernels the test never got to record: the hub's descendants
            for child in psutil.Process(proc.pid).children(recursive=True):
                seen.setdefault(f"pid {child.pid}", child.pid)
        except psutil.NoSuchProcess:
            pass
        stop_hub(proc)
        for pid in seen.values():  # by id, whatever happened above
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def _status(port: int, path: str) -> int:
    """The HTTP status of GET ``path``, or 0 while nothing answers."""
    try:
        return call(port, "GET", path)[0]
    except OSError:
        return 0


def stop_hub(proc: subprocess.Popen, grace: float = 20) -> None:
    """SIGTERM the hub (it stops its proxy and any servers left), then SIGKILL its group after ``grace`` s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def log_in(port: int, name: str) -> str:
    """A learner's API token, from logging in with username and password through the REST API."""
    status, body, _ = call(port, "POST", f"/hub/api/users/{name}/tokens", body={
        "auth": {"username": name, "password": "any password: the dummy authenticator"}, "note": "test login"})
    assert status == 201, (status, body)
    return body["token"]


def server_model(h: dict, name: str) -> dict:
    """The learner's default server as the admin API sees it (state included), or {} when stopped."""
    status, body, _ = call(h["port"], "GET", f"/hub/api/users/{name}?include_stopped_servers=1", h["token"])
    assert status == 200, (status, body)
    return body["servers"].get("", {})


async def preflight(h: dict, name: str, token: str) -> tuple[str, list, str, list]:
    """Start a kernel on the learner's server, run lesson 00's preflight, then report where the caches go."""
    status, kernel, _ = call(h["port"], "POST", f"/user/{name}/api/kernels", token, {"name": "python3"})
    assert status == 201, (status, kernel)
    out, errors = await execute(h["port"], name, token, kernel["id"], preflight_code())
    report, report_errors = await execute(h["port"], name, token, kernel["id"], REPORT_CODE)
    return out, errors, report, report_errors


async def both_preflights(h: dict, tokens: dict[str, str]) -> dict[str, tuple]:
    """Lesson 00's preflight in both learners' kernels at once, as a class would run it."""
    results = await asyncio.gather(*(preflight(h, name, tokens[name]) for name in LEARNERS))
    return dict(zip(LEARNERS, results))


def test_two_learners_pass_the_preflight_on_one_hub(class_hub):
    h, start = class_hub, time.monotonic()
    port, admin, shared, seen = h["port"], h["token"], h["shared"], h["pids"]
    before = fingerprint(shared)
    seen["proxy"] = int((h["tmp"] / "jupyterhub-proxy.pid").read_text())

    status, _, _ = call(port, "POST", "/hub/api/users/mallory/tokens", body={"auth": {"username": "mallory", "password": "x"}})
    assert status == 403, "a user missing from the class list must not get in"
    tokens = {name: log_in(port, name) for name in LEARNERS}
    for name in LEARNERS:
        status, body, _ = call(port, "POST", f"/hub/api/users/{name}/server", tokens[name])
        assert status in (201, 202), (status, body)
    for name in LEARNERS:
        model = wait_for(f"{name}'s server", lambda n=name: (m := server_model(h, n)).get("ready") and m, 90,
                         h["proc"], h["log"])
        seen[f"{name} server"] = model["state"]["pid"]
    servers_up = time.monotonic() - start

    for name in LEARNERS:
        status, _, headers = call(port, "GET", f"/user/{name}/", tokens[name])
        assert status == 302, status  # Lab opens at lesson 00 of the learner's copy
        assert urlsplit(headers["Location"]).path == f"/user/{name}/lab/tree/transfer-course/00_start_here.ipynb"
        status, body, _ = call(port, "GET", f"/user/{name}/api/contents/transfer-course/00_start_here.ipynb?content=0",
                               tokens[name])
        assert status == 200, (status, body)
        rss = psutil.Process(seen[f"{name} server"]).memory_info().rss / 1e6
        print(f"{name}'s server: {rss:.0f} MB resident")

    results = asyncio.run(both_preflights(h, tokens))
    preflights_done = time.monotonic() - start
    reports = {}
    for name, (out, errors, report, report_errors) in results.items():
        assert not errors and READY in out, f"{name}'s preflight:\n{out}\n{errors}"
        for asset in ASSETS:  # every asset came from the shared copy
            assert f"{shared / asset}" in out, f"{name} did not use the shared copy of {asset}:\n{out}"
        assert not report_errors, report_errors
        reports[name] = json.loads(report.strip().splitlines()[-1])
        seen[f"{name} kernel"] = reports[name]["pid"]

    homes = h["tmp"] / "home"
    for name in LEARNERS:
        data = homes / name / "course-data"
        assert reports[name]["data_dir"] == str(data) and reports[name]["assets"] == str(shared)
        assert reports[name]["threads"] == "2"
        written = json.loads((data / "hub-test" / "learner-0.json").read_text())
        assert written == {"user": name}
        assert not (data / "assets").exists(), "nothing copied or downloaded: the shared copy served every asset"
        assert (data / "README.md").is_file() and (homes / name / "transfer-course" / "00_start_here.ipynb").is_file()
    assert reports["ada"]["data_dir"] != reports["grace"]["data_dir"]
    assert fingerprint(shared) == before, "the shared assets changed"
    assert loopback_only([h["proc"].pid, *seen.values()]) == []


    for name in LEARNERS:
        status, body, _ = call(port, "DELETE", f"/hub/api/users/{name}/server", admin)
        assert status in (202, 204), (status, body)
    for name in LEARNERS:
        wait_for(f"{name}'s server to stop", lambda n=name: not ((m := server_model(h, n)).get("ready") or m.get("pending")),
                 30, h["proc"], h["log"])
    stop_hub(h["proc"])
    assert h["proc"].returncode == 0, h["log"].read_text()[-3000:]
    wait_for("every server, kernel and the proxy to end", lambda: not any(alive(pid) for pid in seen.values()), 15)
    print(f"hub test: servers ready {servers_up:.1f} s, preflights done {preflights_done:.1f} s, "
          f"all stopped {time.monotonic() - start:.1f} s; ended, by id: {seen}")
