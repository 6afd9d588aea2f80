#!/usr/bin/env python3
"""Writes the seed inputs of every fuzz target into fuzz/corpus/<target>/seed-*: real trace headers (the
filters' unit tests and the formats' specifications), the shipped configurations (istio/base and
envoy/envoy.yaml), and shared-data values encoded as the filters write them. Run from the repository
root; `make fuzz-seeds` does. What the fuzzer finds is kept beside the seeds under other names."""

import base64
import hashlib
import json
import pathlib
import re
import struct

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"


def write(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / ("seed-" + hashlib.sha1(data).hexdigest()[:16])).write_bytes(data)


def encode_map(pairs):
    """The proxy-wasm header map encoding (filter_common::wire::encode_map)."""
    out = struct.pack("<I", len(pairs))
    for n, v in pairs:
        out += struct.pack("<II", len(n), len(v))
    for n, v in pairs:
        out += n + b"\0" + v + b"\0"
    return out


# --- Trace headers -------------------------------------------------------------------------------------
TRACE_HEADERS = re.compile(
    r'^(traceparent|tracestate|b3|x-b3-[a-z]+|uber-trace-id|uberctx-[a-z-]+|ot-tracer-[a-z]+|'
    r'ot-baggage-[a-z-]+|x-datadog-[a-z-]+|x-amzn-trace-id|x-cloud-trace-context|grpc-trace-bin|'
    r'baggage|x-request-id)$'
)
GRPC_BIN = base64.b64encode(
    bytes([0, 0]) + bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")
    + bytes([1]) + bytes.fromhex("00f067aa0ba902b7") + bytes([2, 1])
).decode()
# One request per entry, from the specifications' own examples (see /work/shared/notes/trace-formats.md).
REQUESTS = [
    [("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
     ("tracestate", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")],
    [("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")],
    [("traceparent", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03-future")],
    [("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90")],
    [("b3", "a3ce929d0e0e4736-00f067aa0ba902b7-d")],
    [("b3", "0")],
    [("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"), ("x-b3-spanid", "e457b5a2e4d86bd1"),
     ("x-b3-parentspanid", "05e3ac9a4f6e3b90"), ("x-b3-sampled", "1")],
    [("x-b3-flags", "1")],
    [("uber-trace-id", "4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7:0:1"),
     ("uberctx-user", "alice")],
    [("uber-trace-id", "a3ce929d0e0e4736%3A00f067aa0ba902b7%3A0%3A3")],
    [("ot-tracer-traceid", "a3ce929d0e0e4736"), ("ot-tracer-spanid", "00f067aa0ba902b7"),
     ("ot-tracer-sampled", "true"), ("ot-baggage-user", "alice")],
    [("x-datadog-trace-id", "11803532876627986230"), ("x-datadog-parent-id", "67667974448284343"),
     ("x-datadog-sampling-priority", "2"), ("x-datadog-origin", "synthetics"),
     ("x-datadog-tags", "_dd.p.tid=4bf92f3577b34da6,_dd.p.dm=-4")],
    [("x-amzn-trace-id", "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")],
    [("x-amzn-trace-id", "Self=1-67891234-12456789abcdef012345678;Root=1-67891233-abcdef012345678912345678;Lineage=a87bd80c:1|68fd508a:5")],
    [("x-cloud-trace-context", "105445aa7843bc8bf206b12000100000/1;o=1")],
    [("grpc-trace-bin", GRPC_BIN)],
    [("baggage", "userId=alice,serverNode=DF%2028,isProduction=false;prop1=val"),
     ("baggage", "k=v")],
    [("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
     ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")],
    [("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"),
     ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
     ("x-request-id", "c1a5e7c6-0000-4000-8000-000000000001")],
]


def unit_test_pairs():
    """("name", "value") pairs with a trace header name, from the trace-context unit tests."""
    pairs = []
    for f in sorted((ROOT / "filters" / "trace-context" / "src").rglob("*.rs")):
        for name, value in re.findall(r'\(\s*"([a-z0-9-]+)",\s*"((?:[^"\\]|\\.)*)"', f.read_text()):
            if TRACE_HEADERS.match(name) and "{" not in value:
                pairs.append((name, value.encode().decode("unicode_escape")))
    return pairs


def trace_inputs():
    for req in REQUESTS:
        write("trace_headers", "".join(f"{n}: {v}\n" for n, v in req))
    for n, v in unit_test_pairs():
        write("trace_headers", f"{n}: {v}\n")
    values = [v for req in REQUESTS for _, v in req]
    for req in REQUESTS:
        for n, v in req:
            if n == "traceparent":
                write("traceparent", v)
            if n == "tracestate":
                write("tracestate", v)
            if n == "baggage" or n.startswith(("uberctx-", "ot-baggage-")):
                write("baggage", f"{v}\n{n}: {v}\n")
    for v in ["rojo=00f067aa0ba902b7", "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7\nfoo@vendor=bar",
              "dd=s:2;o:rum;p:00f067aa0ba902b7;t.dm:-4", "a=1,,b=2, c=3 ", "x" * 300 + "=y"]:
        write("tracestate", v)
    for v in ["key1=value1;property1;property2, key2 = value2, key3=value3; propertyKey=propertyValue",
              "a=%E2%82%AC,b=c%20d", "bad key=v,k="]:
        write("baggage", v)
    # Correlation entries: request id asked for, then the slot's value as correlation::encode writes it.
    rid = "c1a5e7c6-0000-4000-8000-000000000001"
    entry = f"{rid}\n4bf92f3577b34da6a3ce929d0e0e4736\n00f067aa0ba902b7\n13\n1764000060000000000"
    write("correlation", f"{rid}\n{entry}")
    write("correlation", f"{rid}\n{entry}\ncongo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
    write("correlation", f"other\n{entry}")


# --- Configurations ------------------------------------------------------------------------------------
def plugin_configs():
    """The pluginConfig of each shipped WasmPlugin (written as JSON) and each configuration in envoy.yaml."""
    out = {}
    for f in sorted((ROOT / "istio" / "base").glob("*.yaml")):
        text = f.read_text()
        m = re.search(r"pluginName:\s*(\S+)", text)
        start = text.find("pluginConfig: {")
        if not m or start < 0:
            continue
        i, depth = text.index("{", start), 0
        for j in range(i, len(text)):
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            if depth == 0:
                out.setdefault(m.group(1), []).append(text[i:j + 1])
                break
    envoy = (ROOT / "envoy" / "envoy.yaml").read_text()
    for value, module in re.findall(
            r"value: '(\{.*?\})'.*?filename: dist/([a-z_]+)\.wasm", envoy, re.S):
        out.setdefault(module.replace("_", "-"), []).append(value)
    return out


EXTRA_CONFIGS = {
    "trace-context": [
        "", "{}",
        '{"extract": ["b3", "tracecontext"], "inject": ["tracecontext", "b3multi"], "participate": true,'
        ' "tracestateKey": "acme", "baggage": {"maxMembers": 8, "denyKeys": ["secret"]},'
        ' "newTraceIdBits": 64, "samplingRatio": 0.25, "direction": "outbound"}',
    ],
    "circuit-breaker": [
        "", "{}",
        '{"breakers": [{"name": "pay", "keyBy": "authority", "window": {"type": "count", "size": 20},'
        ' "failureRateThreshold": 50, "slowCallDuration": "2s", "consecutiveFailures": 5,'
        ' "halfOpenProbes": 3, "openDuration": "5s", "maxOpenDuration": "5m"}]}',
    ],
    "fallback": [
        "", "{}",
        '{"rules": [{"name": "stale", "triggers": {"status": "500-599", "envoy": ["timeout"]},'
        ' "response": {"kind": "stale", "ttl": "60s", "otherwise": {"kind": "problem"}}},'
        ' {"name": "static", "triggers": {"circuitBreaker": true}, "response": {"kind": "static",'
        ' "status": 200, "headers": {"content-type": "application/json"},'
        ' "body": "{\\"trace\\": \\"{{traceId}}\\"}"}}]}',
    ],
}


def config_inputs():
    configs = plugin_configs()
    for module, extra in EXTRA_CONFIGS.items():
        for c in configs.get(module, []) + extra:
            write("config_" + module.replace("-", "_"), c)
    for v in ['"503"', '"500-599"', '["502", "504-599"]', "[0, 14, 16]", '"500ms"', '"1m30s"',
              '{"status": ["500-599"], "grpcStatus": [14], "envoy": ["timeout", "reset"],'
              ' "circuitBreaker": true}']:
        write("config_values", v)
    # Hostile documents every configuration must refuse with one line: nesting past serde_json's
    # limit, numbers out of range or fractional, lone surrogates, duplicate keys, a list for an object.
    for module in ["trace_context", "circuit_breaker", "fallback"]:
        for v in ['[' * 200 + ']' * 200, '{"maxSharedMemory": 1e400}', '{"maxSharedMemory": 18446744073709551616}',
                  '{"maxSharedMemory": 5.5}', '{"maxSharedMemory": 5.0}', r'{"x\ud800": 1}', '{"a": 1, "a": 2}',
                  '{"maxSharedMemory": "64Mi", "maxSharedMemory": "1Mi"}']:
            write("config_" + module, v)


# --- Fallback: templates, cache entries, response headers -----------------------------------------------
def fallback_inputs():
    for body, ct in [('{"trace": "{{traceId}}", "status": {{status}}}', "application/json"),
                     ("<p>{{reason}} {{requestId}}</p>", "text/html; charset=utf-8"),
                     ("error {{status}}: {{reason}}", "text/plain"), ("{{unknown}} {{", "text/css")]:
        write("render", "\0".join([body, ct, "4bf92f3577b34da6a3ce929d0e0e4736",
                                   "c1a5e7c6-0000-4000-8000-000000000001", "<script>\"x\"</script>\n",
                                   "text/html;q=0.9, application/json", "503"]))
    for vary, ct, body in [("", "application/json", b'{"ok": true}'),
                           ("accept-language,x-tenant", "text/html", b"<p>hi</p>")]:
        # Version 3: key, stored at, initial Age, freshness lifetime, serving window, Vary hash.
        entry = struct.pack("<B16sQIIQ16s", 3, bytes(range(16)), 1764000000000000000, 30, 60,
                            60_000_000_000, bytes(range(16, 32)))
        entry += struct.pack("<H", len(vary)) + vary.encode()
        entry += struct.pack("<I", len(ct)) + ct.encode() + body
        write("cache_entry", entry)
    responses = [
        [(b":status", b"200"), (b"content-type", b"application/json"),
         (b"cache-control", b"max-age=60, stale-if-error=300"), (b"age", b"12"),
         (b"vary", b"Accept-Encoding, X-Tenant")],
        [(b":status", b"200"), (b"cache-control", b"private, no-store"), (b"set-cookie", b"a=b")],
        [(b":status", b"200"), (b"cache-control", b's-maxage=10, must-revalidate, x="a,b"'),
         (b"content-length", b"1048577"), (b"content-encoding", b"gzip"), (b"vary", b"*")],
        [(b"authorization", b"Bearer x"), (b"accept", b"text/html"), (b"x-tenant", b"acme")],
        # A caller's own Cache-Control.
        [(b"cache-control", b"max-stale, stale-if-error=60"), (b"cache-control", b"Max-Stale=10, no-cache")],
    ]
    for r in responses:
        write("cache_policy", encode_map(r))
        write("wire", encode_map(r))
    for req in REQUESTS[:6]:
        write("wire", encode_map([(n.encode(), v.encode()) for n, v in req]))


# --- Circuit breaker: shared-data values ---------------------------------------------------------------
def breaker_inputs():
    def record(state, gen, trips, until, admitted, succeeded, owner=None, used=None):
        b = struct.pack("<BIIQII", state, gen, trips, until, admitted, succeeded)
        return b if owner is None else b + struct.pack("<QQ", owner, used)

    values = [
        b"\0" + record(0, 1, 0, 0, 0, 0, 0x5eedf00d00000001, 1764000000000000000),
        b"\0" + record(1, 2, 1, 1764000005000000000, 0, 0, 7, 1764000000000000000),
        b"\0" + record(2, 3, 1, 1764000010000000000, 2, 1, 7, 1764000005000000000),
        b"\0" + record(2, 3, 1, 1764000010000000000, 2, 1),  # the older 25-byte layout
        b"\0" + record(1, 2, 1, 5, 0, 0)[:17],  # truncated
    ]
    time = struct.pack("<BIQI", 1, 4, 1764000000000000000, 1) + struct.pack("<Q", 1764000001000000000)
    time += struct.pack("<BI", 1, 2) + struct.pack("<QIII", 176400000, 10, 3, 1) * 2
    count = struct.pack("<BIQI", 1, 4, 0, 0) + struct.pack("<BII", 2, 3, 1)
    count += b"".join(struct.pack("<QB", 1764000000000000000 + i, i % 4) for i in range(3))
    values += [b"\1" + time, b"\1" + count]
    values += [b"\2" + bytes([1]) + struct.pack("<QQ", 0x1234, 1764000000) * 3, b"\2\1", b"\2\2"]
    values += [b"\3" + struct.pack("<QQ", 0x0123456789abcdef, 0xfedcba9876543210)]
    for v in values:
        write("breaker_state", v)


# --- Outcomes: what a response says, then classification rules or fallback triggers ---------------------
def outcome_inputs():
    # (status, grpc status, response flags, bits: 1 status present, 2 grpc present, 4 breaker
    # rejection, 16 code details present; code details)
    heads = [
        (200, 0, 0, 1 | 16, b"via_upstream"),
        (503, 14, 0, 1 | 2 | 16, b"via_upstream"),
        (504, 0, 1 << 2, 1 | 16, b"response_timeou"),  # UT, Envoy's own reply
        (0, 0, 1 << 14, 16, b"downstream_rem"),  # DC: no status, the caller left
        (0, 0, 1 << 5, 0, b""),  # UF without a status
        (503, 0, 0, 1 | 4 | 16, b"circuit_breake"),
    ]
    bodies = [b"", b'[{"outcome": "failure", "status": "500-599"}, {"outcome": "ignore", "envoy": ["downstreamCancel"]}]',
              b'[{"outcome": "success", "grpcStatus": [5]}]',
              b'{"status": ["502", "504-599"], "grpcStatus": [14], "envoy": ["timeout", "localReply"], "circuitBreaker": true}']
    for (status, grpc, flags, bits, details) in heads:
        head = struct.pack("<HIQB", status, grpc, flags, bits) + details.ljust(9, b"\0")[:9]
        for body in bodies:
            write("outcome", head + body)


if __name__ == "__main__":
    trace_inputs()
    config_inputs()
    fallback_inputs()
    breaker_inputs()
    outcome_inputs()
    for d in sorted(CORPUS.iterdir()):
        print(f"  {d.name}: {len(list(d.iterdir()))} inputs")
