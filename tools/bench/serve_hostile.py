#!/usr/bin/python3
"""Hostile requests against a running `graft serve` process (issue #14's server rows), on loopback.

For every row: the status, the size of the answer, the time it took and the server's peak resident memory while it
ran (VmHWM, reset before each row through /proc/PID/clear_refs). Then the latency of a small concurrent request
(a 4-token completion to BASE) while a heavy request is processed, beside the same small request on an idle server.

  /usr/bin/python3 tools/bench/serve_hostile.py --graft src/Graft.Cli/bin/Release/net10.0/graft \
      --model assets/demo/base --plugin bridge=/tmp/bridge.graft --vision assets/demo/vision [--json]

The server is started by this script (its stdout and stderr are kept and their line counts reported) and stopped at the
end. Standard library only.
"""
import argparse
import base64
import http.client
import json
import os
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
import zlib


def png(width, height, bit_depth, colour_type, row_bytes, row=None):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = (b"\x00" + (row if row is not None else bytes(row_bytes))) * height
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def data_uri(data):
    return "data:image/png;base64," + base64.b64encode(data).decode()


def chat(model, content, **extra):
    body = {"model": model, "messages": [{"role": "user", "content": content}], "max_tokens": 4, "temperature": 0}
    body.update(extra)
    return json.dumps(body).encode()


def images(model, uris, text="what is this?"):
    parts = [{"type": "text", "text": text}] + [{"type": "image_url", "image_url": {"url": u}} for u in uris]
    return chat(model, parts)


class Server:
    def __init__(self, args, fresh_log=False):
        self.log = open(os.path.join(args.workdir, "serve.log"), "w+" if fresh_log else "a+")
        command = [args.graft, "serve", "--model", args.model, "--port", "0"]
        for p in args.plugin:
            command += ["--plugin", p]
        if args.vision:
            command += ["--vision", args.vision]
        command += args.extra
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.process.stdout.readline()
        if "listening on" not in line:
            raise SystemExit("graft serve did not start: " + line + open(self.log.name).read())
        address = line.split("listening on ")[1].split()[0]
        self.host, self.port = address.split("//")[1].rstrip("/").rsplit(":", 1)
        self.port = int(self.port)
        self.base = line.split("(models: ")[1].split(",")[0].rstrip(")")
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.process.stdout:
            self.log.write(line)
            self.log.flush()

    def reset_peak(self):
        with open(f"/proc/{self.process.pid}/clear_refs", "w") as f:
            f.write("5")

    def memory(self, field):
        for line in open(f"/proc/{self.process.pid}/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) // 1024
        return -1

    def post(self, body, path="/v1/chat/completions", timeout=600):
        connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            connection.request("POST", path, body=body, headers={"content-type": "application/json"})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def get(self, path):
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def raw(self, payload, pause=None, timeout=30):
        """Sends raw bytes (a list of pieces, with `pause` seconds between them); returns the first response line or '(closed)'."""
        s = socket.create_connection((self.host, self.port), timeout=timeout)
        try:
            for i, piece in enumerate(payload):
                if i and pause:
                    time.sleep(pause)
                try:
                    s.sendall(piece)
                except OSError:
                    break
            data = b""
            try:
                while b"\r\n\r\n" not in data or len(data) < 4096:
                    more = s.recv(65536)
                    if not more:
                        break
                    data += more
            except OSError:
                pass
            if not data:
                return "(closed)", b""
            head, _, body = data.partition(b"\r\n\r\n")
            return head.split(b"\r\n")[0].decode(errors="replace"), body
        finally:
            s.close()

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def error_code(body):
    try:
        return json.loads(body)["error"]["code"]
    except Exception:
        return None


def rows(base, plugin_model):
    """(name, run(server)) for every row."""
    ok = chat(base, "hello")
    bomb = data_uri(png(4096, 4096, 1, 0, 512))
    tiny = data_uri(png(8, 8, 8, 2, 24, row=bytes(range(24))))
    big_text = b'{"model": "' + base.encode() + b'", "messages": [{"role": "user", "content": "' + b"a " * (25 << 20) + b'"}]}'
    yield "invalid UTF-8 in content", lambda server: server.post(chat(base, "x").replace(b'"x"', b'"\xff\xfe"'))
    yield "overlong UTF-8 in model", lambda server: server.post(chat("x", "hi").replace(b'"x"', b'"\xc0\xaf"'))
    yield "lone \\ud800 in role", lambda server: server.post(chat(base, "hi").replace(b'"user"', b'"\\ud800"'))
    yield "lone \\ud800 in stop", lambda server: server.post(chat(base, "hi", stop="x").replace(b'"stop": "x"', b'"stop": "\\ud800"'))
    yield "lone \\ud800 in image url", lambda server: server.post(images(plugin_model, ["data:image/png;base64,\\ud800"]).replace(b"\\\\ud800", b"\\ud800"))
    yield "temperature 1e-45", lambda server: server.post(chat(base, "hi", temperature=1e-45))
    yield "max_tokens 2147483647", lambda server: server.post(chat(base, "hi", max_tokens=2147483647))
    yield "one 50 MB text message", lambda server: server.post(big_text)
    yield "20 PNG bombs (4096^2, 1-bit)", lambda server: server.post(images(plugin_model, [bomb] * 20))
    yield "1,000 tiny images", lambda server: server.post(images(plugin_model, [tiny] * 1000))
    yield "a 1 MiB model name", lambda server: server.post(chat("m" * (1 << 20), "hi"))
    yield "chunked body, bad chunk size", lambda server: server.raw([
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"])
    yield "slow body (1 byte / 2 s)", lambda server: server.raw(
        [b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"] + [b" "] * 12, pause=2)
    yield "500 MB body", lambda server: server.raw([
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 524288000\r\n\r\n" + b" " * 65536])
    yield "a normal request afterwards", lambda server: server.post(ok)


def concurrent_latency(server, heavy_body, small_body, seconds=None):
    """Latency of small requests sent one after another while the heavy one runs; returns (heavy status, heavy s, latencies)."""
    latencies, done = [], threading.Event()
    result = {}

    def heavy():
        start = time.perf_counter()
        result["status"], _ = server.post(heavy_body, timeout=600)
        result["seconds"] = time.perf_counter() - start
        done.set()

    thread = threading.Thread(target=heavy)
    thread.start()
    time.sleep(0.05)
    while not done.is_set():
        start = time.perf_counter()
        status, _ = server.post(small_body)
        latencies.append(time.perf_counter() - start)
        if status != 200:
            latencies[-1] = float("nan")
    thread.join()
    return result["status"], result["seconds"], latencies


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--graft", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--plugin", action="append", default=[])
    parser.add_argument("--vision")
    parser.add_argument("--workdir", default="/tmp")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("extra", nargs="*", help="more graft serve options, after --")
    args = parser.parse_args()
    server = Server(args, fresh_log=True)
    plugin_model = server.base + "+" + args.plugin[0].split("=")[0] if args.plugin else server.base
    report = {"load_average": os.getloadavg(), "rows": [], "latency": {}}
    try:
        server.post(chat(server.base, "warm up"))
        for name, run in rows(server.base, plugin_model):
            # Each row on a fresh server: the garbage collector keeps what an earlier row grew, so peaks would mix.
            server.stop()
            server = Server(args)
            server.post(chat(server.base, "warm up"))
            server.reset_peak()
            before = server.memory("VmRSS")
            start = time.perf_counter()
            try:
                status, body = run(server)
            except Exception as e:  # a closed connection is an answer too
                status, body = f"({type(e).__name__})", b""
            seconds = time.perf_counter() - start
            row = {"row": name, "status": status, "code": error_code(body), "body_bytes": len(body), "seconds": round(seconds, 3),
                   "rss_before_mb": before, "peak_rss_mb": server.memory("VmHWM")}
            report["rows"].append(row)
            if not args.json:
                print(f"{name:32} {str(status):24} {str(row['code']):28} {len(body):>8} B {seconds:8.2f} s  peak {row['peak_rss_mb']} MB (before {before})", flush=True)
        for name, extra in [("port already in use", ["--port", str(server.port)]), ("--host not on this machine", ["--host", "192.0.2.1"])]:
            command = [args.graft, "serve", "--model", args.model] + (extra if "--port" in extra else extra + ["--port", "0"])
            finished = subprocess.run(command, capture_output=True, text=True, timeout=120)
            lines = (finished.stdout + finished.stderr).strip().splitlines()
            report["rows"].append({"row": name, "status": f"exit {finished.returncode}", "output_lines": len(lines), "output": lines[:3]})
            if not args.json:
                print(f"{name:32} exit {finished.returncode}, {len(lines)} line(s): {lines[0] if lines else ''}", flush=True)
        small = chat(server.base, "hi", max_tokens=4)
        idle = []
        for _ in range(20):
            start = time.perf_counter()
            server.post(small)
            idle.append(time.perf_counter() - start)
        report["latency"]["idle"] = idle
        tiny = data_uri(png(8, 8, 8, 2, 24, row=bytes(range(24))))
        for name, heavy in [("1,000 tiny images", images(plugin_model, [tiny] * 1000)),
                            ("16 tiny images", images(plugin_model, [tiny] * 16)),
                            ("one 50 MB text message", b'{"model": "' + server.base.encode() + b'", "messages": [{"role": "user", "content": "' + b"a " * (25 << 20) + b'"}]}')]:
            status, seconds, latencies = concurrent_latency(server, heavy, small)
            report["latency"][name] = {"heavy_status": status, "heavy_seconds": seconds, "small": latencies}
        if not args.json:
            def describe(values):
                values = [v for v in values if v == v]
                return f"n={len(values)} median {statistics.median(values) * 1000:.0f} ms, max {max(values) * 1000:.0f} ms" if values else "none"
            print(f"small request, idle server: {describe(report['latency']['idle'])}")
            for name, entry in report["latency"].items():
                if name != "idle":
                    print(f"small request beside '{name}' ({entry['heavy_status']} after {entry['heavy_seconds']:.2f} s): {describe(entry['small'])}")
        server.log.flush()
        log = open(server.log.name).read().splitlines()
        report["log_lines"] = len(log)
        report["log_warnings"] = sum(1 for line in log if "warn" in line)
        report["log_errors"] = sum(1 for line in log if "fail:" in line or "crit:" in line or "Exception" in line)
        report["load_average_after"] = os.getloadavg()
        if args.json:
            print(json.dumps(report))
        else:
            print(f"server log: {report['log_lines']} lines, {report['log_warnings']} warnings, {report['log_errors']} errors/traces; "
                  f"load average {report['load_average'][0]:.2f} -> {report['load_average_after'][0]:.2f}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
