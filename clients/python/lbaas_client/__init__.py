"""A thin helper over the Python code grpcio-tools generates from proto/ (see ../generate.py).

    import lbaas_client
    client = lbaas_client.connect("127.0.0.1:50051", project="demo")   # or token="..."
    pb = client.pb                                                   # lbaas.api.v1.api_pb2
    lb = client.load_balancers.GetLoadBalancer(pb.GetLoadBalancerRequest(id="..."))

Every call carries the caller's identity as metadata: `authorization: Bearer TOKEN` when a token is
given, else `x-project-id: PROJECT` (accepted only when the api allows the project header).

The generated code lives in a directory of its own (default: lbaas_client/gen, or
$LBAAS_CLIENT_GEN, or the `gen_dir` argument), put on sys.path because protoc's modules import each
other as `lbaas.api.v1...`.
"""
from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Optional, Sequence

import grpc

__all__ = ["Client", "GeneratedCodeMissing", "connect", "load", "metadata"]

DEFAULT_GEN_DIR = Path(__file__).resolve().parent / "gen"


class GeneratedCodeMissing(RuntimeError):
    """The generated modules are not where they were looked for."""


@dataclass(frozen=True)
class Generated:
    """The generated modules of the tenant API."""

    pb: ModuleType  # lbaas.api.v1.api_pb2: messages and enums
    grpc: ModuleType  # lbaas.api.v1.api_pb2_grpc: the service stubs


def load(gen_dir: Optional[os.PathLike[str] | str] = None) -> Generated:
    """Imports the generated tenant API from `gen_dir` ($LBAAS_CLIENT_GEN, else lbaas_client/gen)."""
    directory = Path(gen_dir or os.environ.get("LBAAS_CLIENT_GEN") or DEFAULT_GEN_DIR).resolve()
    if not (directory / "lbaas" / "api" / "v1" / "api_pb2.py").is_file():
        raise GeneratedCodeMissing(
            f"no generated code in {directory}: run "
            f"`python3 clients/python/generate.py --out {directory}` first"
        )
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))
    return Generated(
        pb=importlib.import_module("lbaas.api.v1.api_pb2"),
        grpc=importlib.import_module("lbaas.api.v1.api_pb2_grpc"),
    )


def metadata(project: Optional[str] = None, token: Optional[str] = None) -> list[tuple[str, str]]:
    """The identity metadata: a bearer token when given, else the project header."""
    if token:
        return [("authorization", f"Bearer {token}")]
    if project:
        return [("x-project-id", project)]
    raise ValueError("give a project or a token")


class _Identity(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
):
    """Adds the caller's metadata to every call."""

    def __init__(self, md: Sequence[tuple[str, str]]):
        self._md = list(md)

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        merged = list(details.metadata or []) + self._md
        return _CallDetails(
            method=details.method,
            timeout=details.timeout,
            metadata=merged,
            credentials=details.credentials,
            wait_for_ready=getattr(details, "wait_for_ready", None),
            compression=getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Callable[..., Any], details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Callable[..., Any], details, request):
        return continuation(self._details(details), request)


@dataclass(frozen=True)
class _CallDetails(grpc.ClientCallDetails):
    method: str
    timeout: Optional[float]
    metadata: Optional[Sequence[tuple[str, str]]]
    credentials: Optional[grpc.CallCredentials]
    wait_for_ready: Optional[bool]
    compression: Any


@dataclass
class Client:
    """Stubs of the tenant API services on one channel, each call carrying the caller's identity."""

    channel: grpc.Channel
    pb: ModuleType
    load_balancers: Any  # LoadBalancerServiceStub
    certificates: Any  # CertificateServiceStub
    quotas: Any  # QuotaServiceStub

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(
    target: str,
    project: Optional[str] = None,
    token: Optional[str] = None,
    gen_dir: Optional[os.PathLike[str] | str] = None,
) -> Client:
    """A plaintext channel to the api at `target` (HOST:PORT) with the caller's identity."""
    generated = load(gen_dir)
    # The api is reached directly: never through an HTTP proxy from the environment.
    channel = grpc.insecure_channel(target, options=[("grpc.enable_http_proxy", 0)])
    channel = grpc.intercept_channel(channel, _Identity(metadata(project, token)))
    stubs = generated.grpc
    return Client(
        channel=channel,
        pb=generated.pb,
        load_balancers=stubs.LoadBalancerServiceStub(channel),
        certificates=stubs.CertificateServiceStub(channel),
        quotas=stubs.QuotaServiceStub(channel),
    )
