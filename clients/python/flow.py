#!/usr/bin/env python3
"""End-to-end flow through the tenant API with the generated Python client.

    python3 clients/python/flow.py --api HOST:PORT --project P --backend-port N [--gen-dir DIR]

1. CreateLoadBalancer, fully populated: one HTTP listener on port 8080 whose default pool is
   ROUND_ROBIN with one member at 127.0.0.1:N.
2. WatchLoadBalancer until provisioning_status is ACTIVE (ERROR or a deadline fails).
3. GetLoadBalancerStatusTree and ListLoadBalancers once, checking they show it.
4. HTTP GETs to http://<vip_address>:8080/ (urllib): each body must equal what the backend itself
   answers on 127.0.0.1:N (and --expect-body, when given).
5. DeleteLoadBalancer with cascade, then GetLoadBalancer until it answers NOT_FOUND.

Exit status 0 when every step held; otherwise non-zero with a message naming the step.
"""
from __future__ import annotations

import argparse
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import grpc  # noqa: E402

import lbaas_client  # noqa: E402

LISTENER_PORT = 8080


class FlowFailed(Exception):
    pass


# What the flow is doing, for the failure message.
step = "starting"


def log(message: str) -> None:
    print(f"flow: {message}", flush=True)


def begin(what: str) -> None:
    global step
    step = what


# urllib must not use an HTTP proxy from the environment: the VIP is on this machine.
_http = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url: str, timeout: float = 5.0) -> str:
    with _http.open(url, timeout=timeout) as response:
        if response.status != 200:
            raise FlowFailed(f"GET {url}: HTTP {response.status}")
        return response.read().decode()


def wait_active(client: lbaas_client.Client, lb_id: str, timeout: float):
    """Follows WatchLoadBalancer until the load balancer is ACTIVE; returns it."""
    pb = client.pb
    begin("waiting for ACTIVE (WatchLoadBalancer)")
    stream = client.load_balancers.WatchLoadBalancer(
        pb.WatchLoadBalancerRequest(id=lb_id), timeout=timeout
    )
    last = None
    try:
        for event in stream:
            lb = event.load_balancer
            last = lb
            status = pb.ProvisioningStatus.Name(lb.provisioning_status)
            log(f"  watch: {pb.ChangeKind.Name(event.kind)} {status} {lb.status_reason}".rstrip())
            if event.kind == pb.CHANGE_KIND_DELETED:
                raise FlowFailed(f"load balancer {lb_id} was deleted while waiting for ACTIVE")
            if lb.provisioning_status == pb.PROVISIONING_STATUS_ACTIVE:
                return lb
            if lb.provisioning_status == pb.PROVISIONING_STATUS_ERROR:
                raise FlowFailed(f"load balancer {lb_id} went to ERROR: {lb.status_reason}")
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
            raise
    finally:
        stream.cancel()
    where = pb.ProvisioningStatus.Name(last.provisioning_status) if last else "no event"
    raise FlowFailed(f"load balancer {lb_id} not ACTIVE within {timeout:.0f}s (last: {where})")


def check_status_tree(client: lbaas_client.Client, lb_id: str, backend_port: int) -> None:
    pb = client.pb
    begin("GetLoadBalancerStatusTree")
    tree = client.load_balancers.GetLoadBalancerStatusTree(
        pb.GetLoadBalancerStatusTreeRequest(id=lb_id), timeout=10
    )
    if tree.load_balancer.id != lb_id:
        raise FlowFailed(f"status tree is of {tree.load_balancer.id!r}, not {lb_id!r}")
    members = [
        (m.address, m.protocol_port)
        for listener in tree.listeners
        for pool in listener.pools
        for m in pool.members
    ]
    if len(tree.listeners) != 1 or members != [("127.0.0.1", backend_port)]:
        raise FlowFailed(f"status tree does not show the listener and member: {tree}")
    log(
        "status tree: load balancer "
        f"{pb.ProvisioningStatus.Name(tree.load_balancer.provisioning_status)}/"
        f"{pb.OperatingStatus.Name(tree.load_balancer.operating_status)}, "
        f"{len(tree.listeners)} listener, members {members}"
    )


def check_listed(client: lbaas_client.Client, lb_id: str) -> None:
    pb = client.pb
    begin("ListLoadBalancers")
    ids, token = [], ""
    while True:
        page = client.load_balancers.ListLoadBalancers(
            pb.ListLoadBalancersRequest(page_size=100, page_token=token), timeout=10
        )
        ids += [lb.id for lb in page.load_balancers]
        token = page.next_page_token
        if not token:
            break
    if lb_id not in ids:
        raise FlowFailed(f"ListLoadBalancers does not list {lb_id}: {ids}")
    log(f"listed: {len(ids)} load balancer(s) in the project, {lb_id} among them")


def send_traffic(vip: str, backend_port: int, expect: str | None, requests: int) -> None:
    begin("sending HTTP traffic through the VIP")
    try:
        answer = http_get(f"http://127.0.0.1:{backend_port}/")
    except (OSError, urllib.error.URLError) as e:
        raise FlowFailed(f"the backend itself (127.0.0.1:{backend_port}) does not answer: {e}")
    if expect is not None and answer != expect:
        raise FlowFailed(f"the backend itself answers {answer!r}, not {expect!r}")
    url = f"http://{vip}:{LISTENER_PORT}/"
    # ACTIVE means the device confirmed the config; allow the listener a moment all the same.
    deadline = time.monotonic() + 10
    while True:
        try:
            body = http_get(url)
            break
        except (OSError, urllib.error.URLError) as e:
            if time.monotonic() > deadline:
                raise FlowFailed(f"GET {url} failed: {e}") from e
            time.sleep(0.2)
    bodies = [body] + [http_get(url) for _ in range(requests - 1)]
    wrong = [b for b in bodies if b != answer]
    if wrong:
        raise FlowFailed(f"GET {url}: {len(wrong)}/{requests} bodies were not {answer!r}: {wrong}")
    log(f"traffic: {requests} GETs to {url} answered {answer!r}")


def delete_and_wait(client: lbaas_client.Client, lb_id: str, timeout: float) -> None:
    pb = client.pb
    begin("DeleteLoadBalancer (cascade)")
    client.load_balancers.DeleteLoadBalancer(
        pb.DeleteLoadBalancerRequest(id=lb_id, cascade=True), timeout=10
    )
    log(f"delete (cascade) accepted for {lb_id}")
    begin("waiting for GetLoadBalancer to answer NOT_FOUND")
    deadline = time.monotonic() + timeout
    while True:
        try:
            lb = client.load_balancers.GetLoadBalancer(
                pb.GetLoadBalancerRequest(id=lb_id), timeout=10
            )
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:
                log(f"deleted: GetLoadBalancer answers NOT_FOUND ({e.details()})")
                return
            raise
        if lb.provisioning_status == pb.PROVISIONING_STATUS_ERROR:
            raise FlowFailed(f"delete of {lb_id} went to ERROR: {lb.status_reason}")
        if time.monotonic() > deadline:
            status = pb.ProvisioningStatus.Name(lb.provisioning_status)
            raise FlowFailed(f"{lb_id} still there {timeout:.0f}s after delete ({status})")
        time.sleep(0.2)


def run(args: argparse.Namespace) -> None:
    begin(f"connecting to {args.api}")
    client = lbaas_client.connect(
        args.api, project=args.project, token=args.token, gen_dir=args.gen_dir
    )
    with client:
        pb = client.pb
        spec = pb.LoadBalancer(
            name=f"py-flow-{uuid.uuid4().hex[:8]}",
            description="created by clients/python/flow.py",
            listeners=[
                pb.Listener(
                    name="http",
                    protocol=pb.PROTOCOL_HTTP,
                    protocol_port=LISTENER_PORT,
                    default_pool=pb.Pool(
                        name="web",
                        protocol=pb.PROTOCOL_HTTP,
                        lb_algorithm=pb.LB_ALGORITHM_ROUND_ROBIN,
                        members=[
                            pb.Member(address="127.0.0.1", protocol_port=args.backend_port)
                        ],
                    ),
                )
            ],
        )
        begin("CreateLoadBalancer")
        lb = client.load_balancers.CreateLoadBalancer(
            pb.CreateLoadBalancerRequest(load_balancer=spec, request_id=str(uuid.uuid4())),
            timeout=10,
        )
        log(f"created {lb.id} ({pb.ProvisioningStatus.Name(lb.provisioning_status)})")
        try:
            lb = wait_active(client, lb.id, args.timeout)
            log(f"ACTIVE: vip {lb.vip_address}")
            if not lb.vip_address:
                raise FlowFailed(f"{lb.id} is ACTIVE without a vip_address")
            check_status_tree(client, lb.id, args.backend_port)
            check_listed(client, lb.id)
            send_traffic(lb.vip_address, args.backend_port, args.expect_body, args.requests)
        except BaseException:
            # Leave nothing behind on failure; the original error is what gets reported.
            try:
                client.load_balancers.DeleteLoadBalancer(
                    pb.DeleteLoadBalancerRequest(id=lb.id, cascade=True), timeout=10
                )
            except grpc.RpcError:
                pass
            raise
        delete_and_wait(client, lb.id, args.timeout)


def fail(message: str) -> None:
    print(f"flow.py: FAILED while {step}: {message}", file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", required=True, help="the api's HOST:PORT")
    identity = parser.add_mutually_exclusive_group(required=True)
    identity.add_argument("--project", help="sent as x-project-id")
    identity.add_argument("--token", help="sent as authorization: Bearer TOKEN")
    parser.add_argument("--backend-port", type=int, required=True, help="the member's port")
    parser.add_argument("--expect-body", help="what the backend must answer (optional)")
    parser.add_argument("--gen-dir", help="the generated code (default lbaas_client/gen)")
    parser.add_argument("--requests", type=int, default=5, help="GETs to send (default 5)")
    parser.add_argument("--timeout", type=float, default=60, help="seconds per wait")
    args = parser.parse_args()
    try:
        run(args)
    except FlowFailed as e:
        fail(str(e))
        return 1
    except grpc.RpcError as e:
        fail(f"gRPC {e.code().name}: {e.details()}")
        return 1
    except lbaas_client.GeneratedCodeMissing as e:
        fail(str(e))
        return 2
    except (OSError, urllib.error.URLError) as e:
        fail(str(e))
        return 1
    log("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
