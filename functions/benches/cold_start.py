#!/usr/bin/env python3
"""Measures each function's start-up: from process spawn to its first
`GET /2018-06-01/runtime/invocation/next` on a local stand-in for the Lambda Runtime API.

Usage: functions/benches/cold_start.py [--runs 20] [--bin-dir DIR]
DIR holds one directory per function with its `bootstrap` (cargo-lambda's layout,
default target/lambda) or the plain binaries `ingest`, `worker`, `reconciler`.
Only loopback addresses are used; the AWS endpoint points at a closed local port, so a
function that called AWS before polling would show it in the figures.
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time

FUNCTION_ENV = {
    "ingest": {
        "QUEUE_URL": "http://127.0.0.1:9/000000000000/datasync-local-records",
        "SIGNING_SECRET_STORE": "ssm",
        "SIGNING_SECRET_NAME": "/datasync/local/ingest/signing-secret",
        "MAX_RECORDS_PER_REQUEST": "500",
        "MAX_BODY_BYTES": "1048576",
        "LEDGER_TABLE": "datasync-local-ledger",
        "LEASE_SECONDS": "900",
        "LEDGER_TTL_DAYS": "30",
    },
    "worker": {
        "RECORDS_TABLE": "datasync-local-records",
        "LEDGER_TABLE": "datasync-local-ledger",
        "DOWNSTREAM_URL": "http://127.0.0.1:9",
        "DOWNSTREAM_RATE_LIMIT_PER_SECOND": "10",
        "DOWNSTREAM_BURST": "10",
        "DOWNSTREAM_TIMEOUT_MS": "5000",
        "LEASE_SECONDS": "900",
        "LEDGER_TTL_DAYS": "30",
    },
    "reconciler": {
        "LEDGER_TABLE": "datasync-local-ledger",
        "QUEUE_URL": "http://127.0.0.1:9/000000000000/datasync-local-records",
        "DLQ_URL": "http://127.0.0.1:9/000000000000/datasync-local-records-dlq",
        "LEASE_SECONDS": "900",
        "MAX_REDRIVE_PER_RUN": "100",
    },
}

COMMON_ENV = {
    "APP_NAME": "datasync",
    "ENV_NAME": "local",
    "METRICS_NAMESPACE": "datasync/local",
    "RUST_LOG": "info",
    "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
    "AWS_LAMBDA_FUNCTION_NAME": "cold-start-probe",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
    "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
    "AWS_LAMBDA_LOG_STREAM_NAME": "probe",
    "AWS_LAMBDA_LOG_GROUP_NAME": "probe",
}


def binary_path(bin_dir, name):
    for candidate in (os.path.join(bin_dir, name, "bootstrap"), os.path.join(bin_dir, name)):
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    sys.exit(f"no binary for {name} in {bin_dir}; build it first (see functions/README.md)")


def measure_once(binary, function):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(10)
    port = listener.getsockname()[1]
    env = dict(COMMON_ENV, **FUNCTION_ENV[function])
    env["AWS_LAMBDA_RUNTIME_API"] = f"127.0.0.1:{port}"
    env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
    started = time.perf_counter()
    process = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        connection, _ = listener.accept()
        connection.settimeout(10)
        data = b""
        while b"\r\n" not in data:
            chunk = connection.recv(1024)
            if not chunk:
                break
            data += chunk
        elapsed_ms = (time.perf_counter() - started) * 1000
        request_line = data.split(b"\r\n", 1)[0].decode(errors="replace")
        if not request_line.startswith("GET /2018-06-01/runtime/invocation/next"):
            sys.exit(f"{function}: unexpected first request {request_line!r}")
        connection.close()
        return elapsed_ms
    finally:
        process.kill()
        process.wait()
        listener.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--bin-dir", default=os.path.join(os.path.dirname(__file__), "..", "..", "target", "lambda"))
    args = parser.parse_args()
    print(f"{'function':<12}{'median ms':>10}{'p90 ms':>10}{'max ms':>10}")
    for function in FUNCTION_ENV:
        binary = binary_path(args.bin_dir, function)
        measure_once(binary, function)  # warm the page cache
        samples = sorted(measure_once(binary, function) for _ in range(args.runs))
        p90 = samples[min(len(samples) - 1, int(len(samples) * 0.9))]
        print(f"{function:<12}{statistics.median(samples):>10.1f}{p90:>10.1f}{samples[-1]:>10.1f}")


if __name__ == "__main__":
    main()
