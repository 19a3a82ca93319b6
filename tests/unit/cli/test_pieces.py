"""Units of the CLI that need no daemon: flags, formatting, templates, frames,
JSON message display, the HTTP client's body decoding."""

import io
import json
import os
import socket
import threading

import pytest

from skiff.cli import fmt, flags, streams, template
from skiff.cli.client import Client, parse_host, quote
from skiff.cli.runopts import go_duration, parse_port_spec, ram_in_bytes


# -- flags --------------------------------------------------------------------------
FL = [flags.F("i,interactive"), flags.F("t,tty"), flags.F("d,detach"),
      flags.F("e,env", "list"), flags.F("name", "str", ""), flags.F("rm"),
      flags.F("n,count", "int", 0)]


@pytest.mark.parametrize("argv,expect", [
    (["-it", "img"], {"interactive": True, "tty": True}),
    (["-e", "A=1", "-eB=2", "-e=C=3", "--env", "D", "img"], {"env": ["A=1", "B=2", "C=3", "D"]}),
    (["--name=x", "--rm=false", "img"], {"name": "x", "rm": False}),
    (["-dn5", "img"], {"detach": True, "count": 5}),
    (["--", "-i"], {"interactive": False}),
])
def test_pflag_forms(argv, expect):
    o, pos, _ = flags.parse(FL, argv, interspersed=False)
    for k, v in expect.items():
        assert o[k] == v
    assert pos[-1] in ("img", "-i")


def test_flags_stop_at_first_positional_when_not_interspersed():
    o, pos, _ = flags.parse(FL, ["-i", "img", "-t", "--name", "y"], interspersed=False)
    assert o.interactive and not o.tty and o.name == ""
    assert pos == ["img", "-t", "--name", "y"]
    o, pos, _ = flags.parse(FL, ["a", "-t", "b"], interspersed=True)
    assert o.tty and pos == ["a", "b"]


@pytest.mark.parametrize("argv,msg", [
    (["--nope"], "unknown flag: --nope"),
    (["-z"], "unknown shorthand flag: 'z' in -z"),
    (["--name"], "flag needs an argument: --name"),
    (["-n", "x"], 'invalid argument "x" for "-n" flag'),
    (["--rm=maybe"], 'invalid argument "maybe" for "--rm" flag'),
])
def test_flag_errors(argv, msg):
    with pytest.raises(flags.UsageError) as e:
        flags.parse(FL, argv)
    assert msg in str(e.value)


# -- value parsers ----------------------------------------------------------------------
def test_sizes_and_durations():
    assert ram_in_bytes("512m", "-m") == 512 * 1024 ** 2
    assert ram_in_bytes("1g", "-m") == 1024 ** 3
    assert ram_in_bytes("100", "-m") == 100
    assert ram_in_bytes("1.5k", "-m") == 1536
    with pytest.raises(flags.UsageError):
        ram_in_bytes("lots", "-m")
    assert go_duration("1m30s") == 90 * 10 ** 9
    assert go_duration("500ms") == 5 * 10 ** 8
    assert go_duration("1.5h") == 5400 * 10 ** 9
    with pytest.raises(flags.UsageError):
        go_duration("10x")


def test_port_specs():
    assert parse_port_spec("8080:80") == [("80/tcp", "", "8080")]
    assert parse_port_spec("80/udp") == [("80/udp", "", "")]
    assert parse_port_spec("127.0.0.1:8000-8001:80-81") == [
        ("80/tcp", "127.0.0.1", "8000"), ("81/tcp", "127.0.0.1", "8001")]
    assert parse_port_spec("[::1]:9000:90") == [("90/tcp", "::1", "9000")]
    with pytest.raises(flags.UsageError):
        parse_port_spec("1:2:3:4")


# -- go-units formatting ------------------------------------------------------------------
@pytest.mark.parametrize("secs,text", [
    (0.5, "Less than a second"), (1, "1 second"), (59, "59 seconds"), (60, "About a minute"),
    (119, "About a minute"), (120, "2 minutes"), (59 * 60 + 59, "59 minutes"),
    (3600, "About an hour"), (5399, "About an hour"), (5400, "2 hours"),
    (47 * 3600, "47 hours"), (48 * 3600, "2 days"), (14 * 86400, "2 weeks"),
    (60 * 86400, "2 months"), (800 * 86400, "2 years"),
])
def test_human_duration(secs, text):
    assert fmt.human_duration(secs) == text


@pytest.mark.parametrize("n,p,text", [
    (0, 3, "0B"), (999, 3, "999B"), (1000, 3, "1kB"), (4261234, 3, "4.26MB"),
    (4261234, 4, "4.261MB"), (999_999_999, 3, "1e+03MB"), (1_983_000, 4, "1.983MB"),
])
def test_human_size(n, p, text):
    assert fmt.human_size(n, p) == text


def test_tabwriter_docker_settings():
    out = fmt.tabwrite("A\tBBBBBBBBBBBB\tC\nxx\ty\tz\n")
    assert out == ("A         BBBBBBBBBBBB   C\n"
                   "xx        y              z\n")


def test_ports_grouping():
    ports = [{"PrivatePort": 81, "Type": "tcp"}, {"PrivatePort": 80, "Type": "tcp"},
             {"IP": "0.0.0.0", "PrivatePort": 22, "PublicPort": 2222, "Type": "tcp"},
             {"IP": "0.0.0.0", "PrivatePort": 53, "PublicPort": 53, "Type": "udp"}]
    assert fmt.display_ports(ports) == "0.0.0.0:53->53/udp, 80-81/tcp, 0.0.0.0:2222->22/tcp"


# -- templates --------------------------------------------------------------------------------
DATA = {"Name": "/x", "N": 3, "F": 0.25, "L": ["a", "b"], "M": {"k2": "v2", "k1": "v1"},
        "Nil": None, "Labels": None, "B": False}


@pytest.mark.parametrize("tmpl,out", [
    ("{{.Name}}", "/x"), ("{{.N}} {{.F}} {{.B}}", "3 0.25 false"), ("{{.L}}", "[a b]"),
    ("{{.M}}", "map[k1:v1 k2:v2]"), ("{{.Nil}}", "<nil>"), ("{{.Labels}}", "map[]"),
    ("{{.Missing}}", "<no value>"), ("{{json .M}}", '{"k1":"v1","k2":"v2"}'),
    ("{{json .Labels}}", "null"), ("{{range .L}}<{{.}}>{{else}}none{{end}}", "<a><b>"),
    ("{{range .Labels}}x{{else}}none{{end}}", "none"),
    ("{{if gt .N 2}}big{{else if eq .N 2}}two{{else}}small{{end}}", "big"),
    ("{{index .M \"k1\"}} {{index .L 1}}", "v1 b"), ("{{join .L \"+\"}}", "a+b"),
    ("{{.Name | printf \"%q\"}}", '"/x"'), ("{{printf \"%5.2f|%-4s|\" .F \"ab\"}}", " 0.25|ab  |"),
    ("{{/* comment */}}ok", "ok"), ("a  {{- .N -}}  b", "a3b"),
    ("{{$v := .L}}{{range $i, $e := $v}}{{$i}}{{$e}}{{end}}", "0a1b"),
    ("{{with .Nil}}yes{{else}}no{{end}}", "no"), ("{{len .M}}", "2"),
    ("{{slice .Name 1}}", "x"), ("{{upper (index .L 0)}}", "A"),
])
def test_template(tmpl, out):
    assert template.render(tmpl, DATA) == out


@pytest.mark.parametrize("bad", ["{{.Name", "{{if .N}}x", "{{end}}", "{{nosuchfunc .N}}"])
def test_template_errors(bad):
    with pytest.raises(template.TemplateError):
        template.render(bad, DATA)


def test_go_float_printing():
    assert template.go_str(1e21) == "1e+21"
    assert template.go_str(1.5e-7) == "1.5e-07"
    assert template.go_str(123456789.0) == "123456789"


# -- stdcopy frames ------------------------------------------------------------------------------
def test_demux_across_arbitrary_splits():
    data = (streams.frame(1, b"hello ") + streams.frame(2, b"oops\n") +
            streams.frame(1, b"x" * 70000) + streams.frame(1, b""))
    for step in (1, 3, 7, 8, 9, 4096):
        dm = streams.Demux()
        got = []
        for i in range(0, len(data), step):
            got += dm.feed(data[i:i + step])
        assert got == [(1, b"hello "), (2, b"oops\n"), (1, b"x" * 70000), (1, b"")]


def test_copy_output_routes_streams_and_raises_systemerr():
    data = streams.frame(1, b"out") + streams.frame(2, b"err")
    out, err = io.BytesIO(), io.BytesIO()
    chunks = [data[:5], data[5:], b""]
    streams.copy_output(lambda: chunks.pop(0), False, out, err)
    assert (out.getvalue(), err.getvalue()) == (b"out", b"err")
    chunks = [streams.frame(3, b"boom"), b""]
    with pytest.raises(streams.StreamError, match="boom"):
        streams.copy_output(lambda: chunks.pop(0), False, out, err)


def test_detach_keys():
    assert streams.parse_detach_keys("ctrl-p,ctrl-q") == b"\x10\x11"
    assert streams.parse_detach_keys("a,ctrl-@") == b"a\x00"
    with pytest.raises(ValueError):
        streams.parse_detach_keys("ctrl-p,bogus")


def test_json_messages_terminal_redraws_per_id():
    msgs = [{"status": "Pulling from library/busybox", "id": "latest"},
            {"status": "Pulling fs layer", "progressDetail": {}, "id": "aaa"},
            {"status": "Pulling fs layer", "progressDetail": {}, "id": "bbb"},
            {"status": "Downloading", "progressDetail": {"current": 50, "total": 100}, "id": "aaa"},
            {"status": "Pull complete", "progressDetail": {}, "id": "aaa"},
            {"status": "Digest: sha256:abc"}]
    out = io.StringIO()
    streams.display_messages(iter(msgs), out, is_term=True)
    s = out.getvalue()
    # aaa is line 0 of 2: redraw moves up 2 lines, clears, writes, moves back down
    assert "\x1b[2A\x1b[2K\raaa: Downloading " in s
    assert "50B/100B" in s and "\x1b[2B" in s
    assert s.endswith("Digest: sha256:abc\n")
    plain = io.StringIO()
    streams.display_messages(iter(msgs), plain, is_term=False)
    assert plain.getvalue() == ("latest: Pulling from library/busybox\naaa: Pulling fs layer\n"
                                "bbb: Pulling fs layer\naaa: Pull complete\n"
                                "Digest: sha256:abc\n")


def test_json_message_error_raises():
    with pytest.raises(streams.JSONMessageError, match="denied"):
        streams.display_messages(iter([{"errorDetail": {"message": "denied"}, "error": "denied"}]),
                                 io.StringIO(), is_term=False)


# -- HTTP client ------------------------------------------------------------------------------------
def _serve_once(path, responses):
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(1)
    seen = []

    def run():
        conn, _ = srv.accept()
        f = conn.makefile("rb")
        for resp in responses:
            req = b""
            while not req.endswith(b"\r\n\r\n"):
                line = f.readline()
                if not line:
                    return
                req += line
            seen.append(req.decode())
            conn.sendall(resp)
        conn.close()
        srv.close()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, seen


def test_client_chunked_keepalive_and_version_prefix(tmp_path):
    path = str(tmp_path / "s.sock")
    ping = b"HTTP/1.1 200 OK\r\nApi-Version: 1.44\r\nContent-Length: 0\r\n\r\n"
    body = json.dumps([{"Id": "x"}]).encode()
    chunked = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n" +
               b"%x\r\n%s\r\n" % (5, body[:5]) + b"%x\r\n%s\r\n" % (len(body) - 5, body[5:]) +
               b"0\r\n\r\n")
    msg = b'{"message":"No such container: z"}'
    err = b'HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n%s' % (len(msg), msg)
    t, seen = _serve_once(path, [ping, chunked, err])
    c = Client("unix://" + path)
    assert c.get("/containers/json", {"all": 1, "filters": '{"a":{"b":true}}'}) == [{"Id": "x"}]
    from skiff.cli.client import APIError
    with pytest.raises(APIError) as e:
        c.get("/containers/z/json")
    assert e.value.status == 404
    t.join(5)
    assert seen[0].startswith("HEAD /_ping HTTP/1.1")
    assert seen[1].startswith("GET /v1.44/containers/json?all=1&filters=%7B%22a%22%3A%7B%22b"
                              "%22%3Atrue%7D%7D HTTP/1.1")
    assert len(seen) == 3  # one connection, kept alive


def test_parse_host_and_quote():
    assert parse_host("unix:///run/x.sock") == ("unix", "/run/x.sock")
    assert parse_host("tcp://127.0.0.1:2375") == ("tcp", ("127.0.0.1", 2375))
    with pytest.raises(ValueError):
        parse_host("ssh://me@host")
    assert quote("a b/c") == "a%20b%2Fc"


def test_env_host_precedence(monkeypatch):
    from skiff.cli.client import DEFAULT_HOST, env_host
    monkeypatch.delenv("SKIFF_HOST", raising=False)
    monkeypatch.setenv("DOCKER_HOST", "unix:///var/run/docker.sock")
    assert env_host() == (DEFAULT_HOST, True)
    monkeypatch.setenv("DOCKER_HOST", "unix:///tmp/skiff.sock")
    assert env_host() == ("unix:///tmp/skiff.sock", False)
    monkeypatch.setenv("SKIFF_HOST", "unix:///tmp/other.sock")
    assert env_host() == ("unix:///tmp/other.sock", True)


def test_connect_error_message(tmp_path):
    from skiff.cli.client import ConnectError
    c = Client("unix://" + str(tmp_path / "none.sock"))
    with pytest.raises(ConnectError) as e:
        c.negotiate()
    assert "Cannot connect to the skiff daemon at unix://" in str(e.value)
    assert not os.path.exists(tmp_path / "none.sock")


@pytest.mark.parametrize("value,out", [
    ("2000-01-01T00:00:00Z", "946684800.000000000"), ("10m", "1699999400"),
    ("1700000000", "1700000000"), ("1700000000.5", "1700000000.5"),
    ("2024-05-01T10:11:12.5+02:00", "1714551072.500000000"),
])
def test_get_timestamp(value, out):
    assert fmt.get_timestamp(value, now=1700000000) == out


def test_get_timestamp_rejects_garbage():
    with pytest.raises(ValueError, match="failed to parse value as time or duration"):
        fmt.get_timestamp("yesterday")


def test_autostart_command_uses_private_roots(monkeypatch):
    from skiff.cli.autostart import daemon_command
    monkeypatch.setenv("SKIFF_DATA_ROOT", "/tmp/x/data")
    monkeypatch.setenv("SKIFF_EXEC_ROOT", "/tmp/x/run")
    monkeypatch.setenv("SKIFF_DAEMON_ARGS", "--default-runtime runc --iptables false")
    cmd, exec_root, log = daemon_command("/tmp/x/skiff.sock")
    i = cmd.index("-H")
    assert cmd[i:] == ["-H", "unix:///tmp/x/skiff.sock", "--exec-root", "/tmp/x/run",
                       "--data-root", "/tmp/x/data", "--default-runtime", "runc",
                       "--iptables", "false"]
    assert "--data-root" in cmd and cmd[cmd.index("--data-root") + 1] == "/tmp/x/data"
    assert cmd[cmd.index("-H") + 1] == "unix:///tmp/x/skiff.sock"
    assert log == "/tmp/x/run/skiffd.log"
    monkeypatch.delenv("SKIFF_EXEC_ROOT")
    monkeypatch.delenv("SKIFF_DATA_ROOT")
    monkeypatch.delenv("SKIFF_DAEMON_ARGS")
    cmd, exec_root, log = daemon_command("/run/skiff/skiff.sock")
    assert exec_root == "/run/skiff" and log == "/var/log/skiff/skiffd.log"
    assert "--data-root" not in cmd
